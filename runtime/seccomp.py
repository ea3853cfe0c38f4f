"""Seccomp: docker's default syscall policy (or a docker-format JSON profile) compiled to a
classic-BPF program that runtime.init installs as the last step before execve.

Owns: the default profile (the policy of moby's profiles/seccomp/default.json, written here as
data: its allow-list, argument rules and capability/arch conditions), reading and checking a
docker JSON profile, and the compiler: profile + architecture + the container's capabilities
-> `struct sock_filter[]` bytes. Must not: install anything (init does, through
runtime.syscalls.seccomp_filter) or be imported by runtime.init (the program is compiled in
the builder, cached per process, and handed over in the plan as bytes).

Why our own compiler: the standard library has no libseccomp binding, and the runtime uses the
standard library only. The program is small (a few hundred instructions) and the semantics we
need are libseccomp's, restated:
  - the architecture is checked first; an architecture the profile does not list (nor we
    know the numbers of) kills the process, as libseccomp's default bad-arch action does.
    The filter is for the *host* architecture: under qemu-user emulation the kernel sees the
    emulator's host system calls.
  - x86_64 with the x32 bit (nr >= 0x40000000) goes to the x32 table, when listed.
  - rules are matched per system call: conditional rules (args) first, in profile order, each
    an AND of its comparisons (an OR of them when one argument index appears twice, as runc
    does); then the call's unconditional action; otherwise the default action.
  - a call numbered above every call the profile names gets ENOSYS instead of the default
    action (runc does the same), so that C libraries fall back from system calls newer than
    the profile (glibc's clone3 -> clone, fchmodat2 -> fchmodat).
  - argument comparisons are on the full 64-bit value (two 32-bit halves).
"""
from __future__ import annotations

import json
import os
import struct
from functools import lru_cache

from runtime.errors import SandboxError

# --- kernel ABI (linux/audit.h, linux/seccomp.h, linux/filter.h) --------------------------
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

OFF_NR, OFF_ARCH, OFF_ARGS = 0, 4, 16  # struct seccomp_data
BPF_LD_W_ABS, BPF_ALU_AND_K, BPF_JA = 0x20, 0x54, 0x05
BPF_JEQ, BPF_JGT, BPF_JGE, BPF_RET_K = 0x15, 0x25, 0x35, 0x06
MAX_INSNS = 4096  # BPF_MAXINSNS

EPERM, ENOSYS = 1, 38

# Section name -> (audit arch, docker arch words, table name in runtime.syscall_tables).
SECTIONS = {
    "x86_64": (AUDIT_ARCH_X86_64, "X86_64"),
    "x86": (AUDIT_ARCH_I386, "I386"),
    "x32": (AUDIT_ARCH_X86_64, "X32"),
    "aarch64": (AUDIT_ARCH_AARCH64, "AARCH64"),
}
HOSTS = {"x86_64": ("x86_64", "amd64"), "aarch64": ("aarch64", "arm64")}  # uname -> (section, GOARCH)
_SCMP_ARCH = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X32": "x32",
              "SCMP_ARCH_AARCH64": "aarch64"}
_KNOWN_SCMP_ARCHES = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM",
                      "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
                      "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
                      "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
                      "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64"}
ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
           "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")


class ProfileError(SandboxError):
    """A seccomp profile that cannot be read or compiled."""


# --- docker's default profile (moby profiles/seccomp/default.json), as data ----------------
_ALWAYS = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create
epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap
mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal
pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename
renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink
symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask
uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write
writev
""".split()
# Not in the list, so denied with EPERM (no CAP_SYS_ADMIN in docker's default set): keyctl,
# add_key, request_key, userfaultfd, unshare, setns, mount, umount2, the new mount API,
# pivot_root, bpf, perf_event_open, clone with namespace flags, and clone3 (ENOSYS, so that
# the C library falls back to clone, whose flags can be checked).
_A = "SCMP_ACT_ALLOW"
_NS_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def _caps(*names: str, names_: list[str]) -> dict:
    return {"names": names_, "action": _A, "includes": {"caps": list(names)}}


DEFAULT_PROFILE: dict = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": EPERM,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": _ALWAYS, "action": _A},
        {"names": ["process_vm_readv", "process_vm_writev", "ptrace"], "action": _A, "includes": {"minKernel": "4.8"}},
        # any socket family but AF_VSOCK (40)
        {"names": ["socket"], "action": _A, "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
        # personality: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query 0xffffffff
        *({"names": ["personality"], "action": _A, "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}
          for v in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)),
        {"names": ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
                   "set_tls"], "action": _A, "includes": {"arches": ["arm", "arm64"]}},
        {"names": ["arch_prctl"], "action": _A, "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["modify_ldt"], "action": _A, "includes": {"arches": ["amd64", "x32", "x86"]}},
        _caps("CAP_DAC_READ_SEARCH", names_=["open_by_handle_at"]),
        _caps("CAP_SYS_ADMIN", names_=[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
            "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
            "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare"]),
        {"names": ["clone"], "action": _A, "args": [{"index": 0, "value": _NS_FLAGS, "valueTwo": 0,
                                                      "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        _caps("CAP_SYS_BOOT", names_=["reboot"]),
        _caps("CAP_SYS_CHROOT", names_=["chroot"]),
        _caps("CAP_SYS_MODULE", names_=["delete_module", "init_module", "finit_module"]),
        _caps("CAP_SYS_PACCT", names_=["acct"]),
        _caps("CAP_SYS_PTRACE", names_=["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                                        "process_vm_writev", "ptrace"]),
        _caps("CAP_SYS_RAWIO", names_=["iopl", "ioperm"]),
        _caps("CAP_SYS_TIME", names_=["settimeofday", "stime", "clock_settime", "clock_settime64"]),
        _caps("CAP_SYS_TTY_CONFIG", names_=["vhangup"]),
        _caps("CAP_SYS_NICE", names_=["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
        _caps("CAP_SYSLOG", names_=["syslog"]),
        _caps("CAP_BPF", names_=["bpf"]),
        _caps("CAP_PERFMON", names_=["perf_event_open"]),
    ],
}


# --- reading a profile -------------------------------------------------------------------
def load_profile(path: str) -> dict:
    """Read and check a docker seccomp profile (JSON); raises ProfileError with one line."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as e:
        raise ProfileError(f"seccomp profile {path}: {e.strerror}") from None
    return parse_profile(text, path)


def parse_profile(text: str | bytes, where: str = "seccomp profile") -> dict:
    try:
        prof = json.loads(text)
    except ValueError as e:
        raise ProfileError(f"{where}: not valid JSON: {e}") from None
    problems = check_profile(prof)
    if problems:
        raise ProfileError(f"{where}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return prof


def check_profile(prof: object) -> list[str]:
    """Every problem with a profile document, one line each (empty = compilable)."""
    p: list[str] = []
    if not isinstance(prof, dict):
        return ["the profile must be a JSON object"]
    known = {"defaultAction", "defaultErrnoRet", "architectures", "archMap", "syscalls", "flags",
             "listenerPath", "listenerMetadata", "comment"}
    for k in prof:
        if k not in known:
            p.append(f"unknown field {k!r}")
    if prof.get("defaultAction") not in ACTIONS:
        p.append(f"defaultAction {prof.get('defaultAction')!r} is not one of {', '.join(ACTIONS)}")
    for k in ("defaultErrnoRet",):
        if k in prof and not _is_uint(prof[k], 4095):
            p.append(f"{k} must be an errno number (0-4095)")
    if prof.get("listenerPath"):
        p.append("listenerPath (SCMP_ACT_NOTIFY) is not supported")
    for a in prof.get("architectures") or []:
        if a not in _KNOWN_SCMP_ARCHES:
            p.append(f"unknown architecture {a!r}")
    for m in prof.get("archMap") or []:
        if not isinstance(m, dict) or m.get("architecture") not in _KNOWN_SCMP_ARCHES:
            p.append(f"archMap: bad entry {m!r}")
            continue
        for a in m.get("subArchitectures") or []:
            if a not in _KNOWN_SCMP_ARCHES:
                p.append(f"archMap: unknown architecture {a!r}")
    calls = prof.get("syscalls") or []
    if not isinstance(calls, list):
        return p + ["syscalls must be a list"]
    for i, c in enumerate(calls):
        where = f"syscalls[{i}]"
        if not isinstance(c, dict):
            p.append(f"{where} must be an object")
            continue
        names = c.get("names") or ([c["name"]] if c.get("name") else [])
        if not names or not all(isinstance(n, str) and n for n in names):
            p.append(f"{where}: names must be a non-empty list of system call names")
        if c.get("action") not in ACTIONS:
            p.append(f"{where}: action {c.get('action')!r} is not one of {', '.join(ACTIONS)}")
        if "errnoRet" in c and not _is_uint(c["errnoRet"], 4095):
            p.append(f"{where}: errnoRet must be an errno number (0-4095)")
        for j, a in enumerate(c.get("args") or []):
            aw = f"{where}.args[{j}]"
            if not isinstance(a, dict):
                p.append(f"{aw} must be an object")
                continue
            if not _is_uint(a.get("index"), 5):
                p.append(f"{aw}: index must be 0-5")
            if a.get("op") not in OPS:
                p.append(f"{aw}: op {a.get('op')!r} is not one of {', '.join(OPS)}")
            for k in ("value", "valueTwo"):
                if k in a and not _is_uint(a[k], 2**64 - 1):
                    p.append(f"{aw}: {k} must be an unsigned 64-bit number")
        for k in ("includes", "excludes"):
            f = c.get(k)
            if f is None:
                continue
            if not isinstance(f, dict) or not set(f) <= {"caps", "arches", "minKernel"}:
                p.append(f"{where}: {k} takes caps, arches and minKernel")
    return p


def _is_uint(v: object, top: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top


# --- compiling -----------------------------------------------------------------------------
def host_arch() -> str:
    m = os.uname().machine
    if m not in HOSTS:
        raise ProfileError(f"seccomp: no system call table for this machine ({m}); run with seccomp=unconfined")
    return m


def _kernel_version() -> tuple[int, ...]:
    rel = os.uname().release
    out = []
    for part in rel.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


def _action(act: str, errno_ret: int | None, default_errno: int) -> int:
    if act == "SCMP_ACT_ALLOW":
        return RET_ALLOW
    if act == "SCMP_ACT_ERRNO":
        return RET_ERRNO | ((errno_ret if errno_ret is not None else default_errno) & 0xFFFF)
    if act in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return RET_KILL_THREAD
    if act == "SCMP_ACT_KILL_PROCESS":
        return RET_KILL_PROCESS
    if act == "SCMP_ACT_TRAP":
        return RET_TRAP
    if act == "SCMP_ACT_TRACE":
        return RET_TRACE | ((errno_ret or 0) & 0xFFFF)
    if act == "SCMP_ACT_LOG":
        return RET_LOG
    raise ProfileError(f"unsupported action {act!r}")


def _sections(prof: dict, machine: str) -> list[str]:
    native, _goarch = HOSTS[machine]
    wanted: set[str] = {native}
    for a in prof.get("architectures") or []:
        if a in _SCMP_ARCH:
            wanted.add(_SCMP_ARCH[a])
    for m in prof.get("archMap") or []:
        if _SCMP_ARCH.get(m.get("architecture")) == native:
            wanted.update(_SCMP_ARCH[a] for a in m.get("subArchitectures") or [] if a in _SCMP_ARCH)
    same_family = {"x86_64": ("x86_64", "x86", "x32"), "aarch64": ("aarch64",)}[machine]
    return [s for s in same_family if s in wanted]


def _applies(rule: dict, caps: frozenset[str], goarch: str, kernel: tuple[int, ...]) -> bool:
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("caps") and not all(c in caps for c in inc["caps"]):
        return False
    if inc.get("arches") and goarch not in inc["arches"]:
        return False
    if inc.get("minKernel"):
        want = tuple(int(x) for x in str(inc["minKernel"]).split(".") if x.isdigit())
        if kernel < want:
            return False
    if exc.get("caps") and any(c in caps for c in exc["caps"]):
        return False
    if exc.get("arches") and goarch in exc["arches"]:
        return False
    return True


def _syscall_actions(prof: dict, table: dict[str, int], caps: frozenset[str], goarch: str,
                     kernel: tuple[int, ...]) -> tuple[dict[int, int], dict[int, list], int]:
    """(unconditional action by nr, conditional rules by nr, highest nr the profile names)."""
    plain: dict[int, int] = {}
    cond: dict[int, list] = {}
    top = -1
    for rule in prof.get("syscalls") or []:
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        nrs = [table[n] for n in names if n in table]
        if nrs:
            top = max(top, *nrs)
        if not nrs or not _applies(rule, caps, goarch, kernel):
            continue
        act = _action(rule["action"], rule.get("errnoRet"), EPERM)
        args = rule.get("args") or []
        if not args:
            for nr in nrs:
                plain.setdefault(nr, act)  # the first unconditional rule for a call wins
            continue
        indexes = [a["index"] for a in args]
        groups = [args] if len(set(indexes)) == len(indexes) else [[a] for a in args]
        for nr in nrs:
            cond.setdefault(nr, []).extend((g, act) for g in groups)
    return plain, cond, top


class _Asm:
    """Classic BPF with symbolic labels; far conditional jumps get `ja` trampolines."""

    def __init__(self) -> None:
        self.code: list[tuple] = []
        self.n = 0

    def label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def put(self, *ins: object) -> None:
        self.code.append(ins)

    def assemble(self) -> bytes:
        code = self.code
        while True:
            pos: dict[str, int] = {}
            pc = 0
            for ins in code:
                if ins[0] == "label":
                    pos[ins[1]] = pc
                else:
                    pc += 1
            if pc > MAX_INSNS:
                raise ProfileError(f"seccomp program too long ({pc} instructions, the kernel takes {MAX_INSNS})")
            out: list[tuple] = []
            fixed = False
            pc = 0
            for ins in code:
                if ins[0] in ("jeq", "jgt", "jge"):
                    _op, k, t, f = ins
                    far = [x for x in (t, f) if pos[x] - (pc + 1) > 255]
                    if far:
                        fixed = True
                        new = {x: self.label() for x in far}
                        out.append((ins[0], k, new.get(t, t), new.get(f, f)))
                        for x, lab in new.items():
                            out.append(("label", lab))
                            out.append(("ja", x))
                        pc += 1 + len(new)
                        continue
                if ins[0] != "label":
                    pc += 1
                out.append(ins)
            code = out
            if not fixed:
                break
        res = bytearray()
        pc = 0
        for ins in code:
            op = ins[0]
            if op == "label":
                continue
            if op == "ld":
                res += struct.pack("<HBBI", BPF_LD_W_ABS, 0, 0, ins[1])
            elif op == "and":
                res += struct.pack("<HBBI", BPF_ALU_AND_K, 0, 0, ins[1])
            elif op == "ret":
                res += struct.pack("<HBBI", BPF_RET_K, 0, 0, ins[1])
            elif op == "ja":
                res += struct.pack("<HBBI", BPF_JA, 0, 0, pos[ins[1]] - (pc + 1))
            else:
                jt, jf = pos[ins[2]] - (pc + 1), pos[ins[3]] - (pc + 1)
                assert 0 <= jt <= 255 and 0 <= jf <= 255, (ins, jt, jf)
                res += struct.pack("<HBBI", {"jeq": BPF_JEQ, "jgt": BPF_JGT, "jge": BPF_JGE}[op], jt, jf, ins[1])
            pc += 1
        return bytes(res)


def _emit_compare(asm: _Asm, arg: dict, ok: str, fail: str) -> None:
    off = OFF_ARGS + 8 * arg["index"]
    lo_off, hi_off = off, off + 4  # little-endian: the low word first
    op = arg["op"]
    value = arg.get("value", 0)
    if op == "SCMP_CMP_MASKED_EQ":
        mask, datum = value, arg.get("valueTwo", 0) & value
        nxt = asm.label()
        asm.put("ld", hi_off)
        asm.put("and", mask >> 32)
        asm.put("jeq", datum >> 32, nxt, fail)
        asm.put("label", nxt)
        asm.put("ld", lo_off)
        asm.put("and", mask & 0xFFFFFFFF)
        asm.put("jeq", datum & 0xFFFFFFFF, ok, fail)
        return
    hi, lo = value >> 32, value & 0xFFFFFFFF
    nxt, nxt2 = asm.label(), asm.label()
    asm.put("ld", hi_off)
    if op == "SCMP_CMP_EQ":
        asm.put("jeq", hi, nxt, fail)
        asm.put("label", nxt)
        asm.put("ld", lo_off)
        asm.put("jeq", lo, ok, fail)
    elif op == "SCMP_CMP_NE":
        asm.put("jeq", hi, nxt, ok)
        asm.put("label", nxt)
        asm.put("ld", lo_off)
        asm.put("jeq", lo, fail, ok)
    elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
        asm.put("jgt", hi, ok, nxt)
        asm.put("label", nxt)
        asm.put("jeq", hi, nxt2, fail)
        asm.put("label", nxt2)
        asm.put("ld", lo_off)
        asm.put("jgt" if op == "SCMP_CMP_GT" else "jge", lo, ok, fail)
    else:  # LT, LE
        asm.put("jgt", hi, fail, nxt)
        asm.put("label", nxt)
        asm.put("jeq", hi, nxt2, ok)
        asm.put("label", nxt2)
        asm.put("ld", lo_off)
        asm.put("jge" if op == "SCMP_CMP_LT" else "jgt", lo, fail, ok)


def _emit_section(asm: _Asm, prof: dict, section: str, caps: frozenset[str], goarch: str,
                  kernel: tuple[int, ...], default: int, enosys_above: bool, base: int, end: int) -> None:
    """The decision tree on the system call number (already in A) for one table."""
    from runtime import syscall_tables
    table = getattr(syscall_tables, SECTIONS[section][1])
    plain, cond, top = _syscall_actions(prof, table, caps, goarch, kernel)
    # leaves: (first nr, kind, payload); consecutive equal plain actions merge into one interval
    leaves: list[tuple[int, str, object]] = []
    limit = top + 1 if enosys_above and top >= 0 else end

    def add(nr: int, kind: str, payload: object) -> None:
        if leaves and leaves[-1][0] == nr:
            leaves.pop()  # an empty interval: the new leaf starts at the same number
        if kind == "ret" and leaves and leaves[-1][1] == "ret" and leaves[-1][2] == payload:
            return  # consecutive equal actions: one interval
        leaves.append((nr, kind, payload))
    add(base, "ret", default)
    for nr in sorted(set(plain) | set(cond)):  # sparse: the gaps between named calls are default
        if nr < base or nr >= limit:
            continue
        if nr in cond:
            add(nr, "cond", (cond[nr], plain.get(nr, default)))
        else:
            add(nr, "ret", plain[nr])
        if nr + 1 < limit:
            add(nr + 1, "ret", default)
    if limit < end:
        add(limit, "ret", RET_ERRNO | ENOSYS)
    if not leaves:
        asm.put("ret", default)
        return

    def tree(lo: int, hi: int) -> None:
        if hi - lo == 1:
            _start, kind, payload = leaves[lo]
            if kind == "ret":
                asm.put("ret", payload)
                return
            rules, fallback = payload  # type: ignore[misc]
            for conds, act in rules:
                nxt = asm.label()
                for i, arg in enumerate(conds):
                    ok = asm.label()
                    _emit_compare(asm, arg, ok, nxt)
                    asm.put("label", ok)
                asm.put("ret", act)
                asm.put("label", nxt)
            asm.put("ret", fallback)
            return
        mid = (lo + hi) // 2
        left, right = asm.label(), asm.label()
        asm.put("ld", OFF_NR)  # the argument checks of a leaf may have changed A
        asm.put("jge", leaves[mid][0], right, left)
        asm.put("label", left)
        tree(lo, mid)
        asm.put("label", right)
        tree(mid, hi)
    tree(0, len(leaves))


def compile_profile(prof: dict, machine: str, caps: tuple[str, ...] | frozenset[str],
                    kernel: tuple[int, ...] | None = None) -> bytes:
    """The BPF program (struct sock_filter[] bytes) for `prof` on `machine` (uname -m)."""
    if machine not in HOSTS:
        raise ProfileError(f"seccomp: no system call table for {machine}")
    problems = check_profile(prof)
    if problems:
        raise ProfileError(f"seccomp profile: {problems[0]}")
    caps = frozenset(caps)
    kernel = kernel if kernel is not None else _kernel_version()
    goarch = HOSTS[machine][1]
    default = _action(prof["defaultAction"], prof.get("defaultErrnoRet"), EPERM)
    enosys = prof["defaultAction"] not in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
    sections = _sections(prof, machine)
    asm = _Asm()
    labels = {s: asm.label() for s in sections}
    asm.put("ld", OFF_ARCH)
    for s in sections:
        if s == "x32":
            continue  # same audit arch as x86_64: told apart by the x32 bit, below
        nxt = asm.label()
        asm.put("jeq", SECTIONS[s][0], labels[s], nxt)
        asm.put("label", nxt)
    asm.put("ret", RET_KILL_PROCESS)  # an architecture the profile does not allow
    for s in sections:
        if s == "x32":
            continue
        asm.put("label", labels[s])
        asm.put("ld", OFF_NR)
        if s == "x86_64":
            native = asm.label()
            if "x32" in sections:
                asm.put("jge", X32_SYSCALL_BIT, labels["x32"], native)
                asm.put("label", native)
            else:
                kill = asm.label()
                asm.put("jge", X32_SYSCALL_BIT, kill, native)
                asm.put("label", kill)
                asm.put("ret", RET_KILL_PROCESS)
                asm.put("label", native)
            _emit_section(asm, prof, s, caps, goarch, kernel, default, enosys, 0, X32_SYSCALL_BIT)
        else:
            _emit_section(asm, prof, s, caps, goarch, kernel, default, enosys, 0, 1 << 32)
    if "x32" in sections:
        asm.put("label", labels["x32"])
        asm.put("ld", OFF_NR)
        _emit_section(asm, prof, "x32", caps, goarch, kernel, default, enosys, X32_SYSCALL_BIT, 1 << 32)
    return asm.assemble()


@lru_cache(maxsize=16)
def _cached(profile_text: str, machine: str, caps: frozenset[str]) -> bytes:
    prof = DEFAULT_PROFILE if profile_text == "default" else parse_profile(profile_text)
    return compile_profile(prof, machine, caps)


def program_for(seccomp: str, caps: tuple[str, ...], machine: str | None = None) -> bytes | None:
    """The program for a SandboxConfig.seccomp value ("default", "unconfined" or a JSON
    profile's text) and capability set; None for unconfined. Cached per process."""
    if seccomp == "unconfined":
        return None
    return _cached(seccomp, machine or host_arch(), frozenset(caps))


_SECTION_SCMP = {v: k for k, v in _SCMP_ARCH.items()}


def oci_seccomp(seccomp: str, caps: tuple[str, ...], machine: str | None = None) -> dict | None:
    """The OCI runtime spec's `linux.seccomp` for a SandboxConfig.seccomp value, with the
    capability and architecture conditions already resolved (what runc/crun load), or None."""
    if seccomp == "unconfined":
        return None
    prof = DEFAULT_PROFILE if seccomp == "default" else parse_profile(seccomp)
    machine = machine or host_arch()
    goarch, kernel, capset = HOSTS[machine][1], _kernel_version(), frozenset(caps)
    calls = []
    for rule in prof.get("syscalls") or []:
        if not _applies(rule, capset, goarch, kernel):
            continue
        c: dict = {"names": list(rule.get("names") or [rule["name"]]), "action": rule["action"]}
        if "errnoRet" in rule:
            c["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            c["args"] = [{"index": a["index"], "value": a.get("value", 0), "valueTwo": a.get("valueTwo", 0),
                          "op": a["op"]} for a in rule["args"]]
        calls.append(c)
    out: dict = {"defaultAction": prof["defaultAction"],
                 "architectures": [_SECTION_SCMP[s] for s in _sections(prof, machine)], "syscalls": calls}
    if "defaultErrnoRet" in prof:
        out["defaultErrnoRet"] = prof["defaultErrnoRet"]
    return out
