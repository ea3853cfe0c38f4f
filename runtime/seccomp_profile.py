"""Seccomp profiles as data: docker's default profile (the policy of moby's
profiles/seccomp/default.json, restated here with its capability and architecture conditions),
and reading and checking a docker-format JSON profile.

Owns: the profile document and its validation (one line per problem). Must not: compile or
install anything (runtime.seccomp compiles; runtime.init installs). Builder side only.
"""
from __future__ import annotations

import json

from runtime.errors import SandboxError

EPERM, ENOSYS = 1, 38
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


def _with_cap(cap: str, names: list[str]) -> dict:
    """Allowed when the container holds `cap`."""
    return {"names": names, "action": _A, "includes": {"caps": [cap]}}


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
        _with_cap("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
        _with_cap("CAP_SYS_ADMIN", [
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
            "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
            "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare"]),
        {"names": ["clone"], "action": _A, "args": [{"index": 0, "value": _NS_FLAGS, "valueTwo": 0,
                                                      "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        _with_cap("CAP_SYS_BOOT", ["reboot"]),
        _with_cap("CAP_SYS_CHROOT", ["chroot"]),
        _with_cap("CAP_SYS_MODULE", ["delete_module", "init_module", "finit_module"]),
        _with_cap("CAP_SYS_PACCT", ["acct"]),
        _with_cap("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                                        "process_vm_writev", "ptrace"]),
        _with_cap("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
        _with_cap("CAP_SYS_TIME", ["settimeofday", "stime", "clock_settime", "clock_settime64"]),
        _with_cap("CAP_SYS_TTY_CONFIG", ["vhangup"]),
        _with_cap("CAP_SYS_NICE", ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
        _with_cap("CAP_SYSLOG", ["syslog"]),
        _with_cap("CAP_BPF", ["bpf"]),
        _with_cap("CAP_PERFMON", ["perf_event_open"]),
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
