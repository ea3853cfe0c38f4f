"""runtime.seccomp: the BPF program it generates, run through a small classic-BPF interpreter
written here (both architectures, x32 and i386 included), checked against docker's default
policy call by call; the profile checks; and the real kernel running the program.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import struct

import pytest

from runtime import seccomp as S
from runtime import seccomp_profile as P
from runtime import syscall_tables as T
from runtime.config import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES

EPERM_RET = S.RET_ERRNO | errno.EPERM
ENOSYS_RET = S.RET_ERRNO | errno.ENOSYS


def run_bpf(prog: bytes, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """Execute a seccomp classic-BPF program on one struct seccomp_data; return its verdict."""
    args = tuple(args) + (0,) * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0x400000, *args)
    ins = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    assert 0 < len(ins) <= 4096
    a = pc = 0
    for _ in range(len(ins) + 1):  # forward jumps only: at most one pass
        code, jt, jf, k = ins[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            assert k % 4 == 0 and k + 4 <= len(data), k
            a = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:  # and #k
            a &= k
        elif code == 0x06:  # ret #k
            return k
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x35):
            hit = {0x15: a == k, 0x25: a > k, 0x35: a >= k}[code]
            pc += jt if hit else jf
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        assert pc < len(ins), "fell off the end of the program"
    raise AssertionError("no verdict")


@pytest.fixture(scope="module")
def x86():
    return S.compile_profile(S.DEFAULT_PROFILE, "x86_64", DEFAULT_CAPABILITIES)


@pytest.fixture(scope="module")
def arm():
    return S.compile_profile(S.DEFAULT_PROFILE, "aarch64", DEFAULT_CAPABILITIES)


DENIED = ("keyctl", "add_key", "request_key", "unshare", "setns", "mount", "umount2", "pivot_root", "bpf",
          "perf_event_open", "userfaultfd", "fsopen", "fsmount", "move_mount", "open_tree", "kexec_load",
          "init_module", "finit_module", "reboot", "swapon", "acct", "settimeofday", "clock_settime",
          "lookup_dcookie", "quotactl", "syslog", "iopl", "ioperm", "kcmp",
          "process_madvise", "pidfd_getfd", "vhangup", "mbind", "set_mempolicy", "open_by_handle_at")


@pytest.mark.parametrize("machine,arch,table", [("x86_64", S.AUDIT_ARCH_X86_64, T.X86_64),
                                                ("x86_64", S.AUDIT_ARCH_I386, T.I386),
                                                ("x86_64", S.AUDIT_ARCH_X86_64, T.X32),
                                                ("aarch64", S.AUDIT_ARCH_AARCH64, T.AARCH64)],
                         ids=["x86_64", "i386", "x32", "aarch64"])
def test_every_call_gets_dockers_verdict(machine, arch, table, x86, arm):
    prog = x86 if machine == "x86_64" else arm
    always = set(P._ALWAYS) | {"ptrace", "process_vm_readv", "process_vm_writev", "chroot"}
    always |= {"arch_prctl", "modify_ldt"} if machine == "x86_64" else {"sync_file_range2"}
    # (includes.arches is matched against the host's architecture, as docker does, so i386's
    # arch_prctl is allowed too on an amd64 host)
    named = {n for r in S.DEFAULT_PROFILE["syscalls"] for n in r["names"] if n in table}
    top = max(table[n] for n in named)
    for name, nr in table.items():
        got = run_bpf(prog, nr, arch, (0,))
        if name in ("socket", "personality", "clone"):
            want = S.RET_ALLOW  # with arguments 0: AF_UNSPEC / PER_LINUX / no namespace flag
        elif name == "clone3":
            want = ENOSYS_RET
        elif name in always:
            want = S.RET_ALLOW
        elif nr > top:
            want = ENOSYS_RET
        else:
            want = EPERM_RET
        assert got == want, (name, nr, hex(got), hex(want))
    for name in DENIED:
        if name in table:
            assert run_bpf(prog, table[name], arch) == EPERM_RET, name


def test_argument_rules(x86, arm):
    for prog, arch, t in ((x86, S.AUDIT_ARCH_X86_64, T.X86_64), (arm, S.AUDIT_ARCH_AARCH64, T.AARCH64)):
        clone = t["clone"]
        assert run_bpf(prog, clone, arch, (0x01200011,)) == S.RET_ALLOW  # glibc fork()
        assert run_bpf(prog, clone, arch, (0x003D0F00,)) == S.RET_ALLOW  # pthread_create
        for flag in (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
            assert run_bpf(prog, clone, arch, (0x11 | flag,)) == EPERM_RET, hex(flag)
        assert run_bpf(prog, clone, arch, ((1 << 40) | 0x11,)) == S.RET_ALLOW  # the mask is 32-bit
        assert run_bpf(prog, t["clone3"], arch) == ENOSYS_RET
        for v in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
            assert run_bpf(prog, t["personality"], arch, (v,)) == S.RET_ALLOW
        for v in (0x0040000, 0x1, 0x100000000):  # ADDR_NO_RANDOMIZE, other personalities
            assert run_bpf(prog, t["personality"], arch, (v,)) == EPERM_RET
        assert run_bpf(prog, t["socket"], arch, (2,)) == S.RET_ALLOW
        assert run_bpf(prog, t["socket"], arch, (40,)) == EPERM_RET  # AF_VSOCK
        assert run_bpf(prog, t["socket"], arch, (40 | 1 << 32,)) == S.RET_ALLOW  # 64-bit compare


def test_foreign_architectures_are_killed(x86, arm):
    assert run_bpf(x86, 0, S.AUDIT_ARCH_AARCH64) == S.RET_KILL_PROCESS
    assert run_bpf(x86, 0, 0x40000028) == S.RET_KILL_PROCESS  # ARM
    assert run_bpf(arm, 0, S.AUDIT_ARCH_X86_64) == S.RET_KILL_PROCESS
    assert run_bpf(arm, 63, 0x40000028) == S.RET_KILL_PROCESS  # 32-bit ARM: no table here
    # a profile without x32 in its arches kills x32 calls instead of reading them as x86_64 ones
    prof = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}
    p = S.compile_profile(prof, "x86_64", ())
    assert run_bpf(p, 0, S.AUDIT_ARCH_X86_64) == S.RET_ALLOW
    assert run_bpf(p, S.X32_SYSCALL_BIT, S.AUDIT_ARCH_X86_64) == S.RET_KILL_PROCESS
    assert run_bpf(p, 3, S.AUDIT_ARCH_I386) == S.RET_KILL_PROCESS


def test_capabilities_open_their_calls():
    caps = DEFAULT_CAPABILITIES + ("CAP_SYS_ADMIN", "CAP_SYS_PTRACE")
    p = S.compile_profile(S.DEFAULT_PROFILE, "x86_64", caps)
    t, arch = T.X86_64, S.AUDIT_ARCH_X86_64
    for name in ("unshare", "mount", "setns", "clone3", "kcmp", "bpf"):
        assert run_bpf(p, t[name], arch) == S.RET_ALLOW, name
    assert run_bpf(p, t["clone"], arch, (0x10000000,)) == S.RET_ALLOW
    for name in ("keyctl", "add_key", "request_key", "userfaultfd", "reboot"):
        assert run_bpf(p, t[name], arch) == EPERM_RET, name  # not even CAP_SYS_ADMIN opens these
    no_chroot = S.compile_profile(S.DEFAULT_PROFILE, "x86_64", tuple(c for c in DEFAULT_CAPABILITIES
                                                                    if c != "CAP_SYS_CHROOT"))
    assert run_bpf(no_chroot, t["chroot"], arch) == EPERM_RET


def test_comparison_operators_on_64_bit_values():
    rnd = random.Random(14)
    edges = [0, 1, 0xFFFFFFFF, 1 << 32, (1 << 32) + 1, (1 << 64) - 1, 0x7FFFFFFF_FFFFFFFF, 0x80000000]
    ops = {"SCMP_CMP_EQ": lambda x, v, _m: x == v, "SCMP_CMP_NE": lambda x, v, _m: x != v,
           "SCMP_CMP_LT": lambda x, v, _m: x < v, "SCMP_CMP_LE": lambda x, v, _m: x <= v,
           "SCMP_CMP_GT": lambda x, v, _m: x > v, "SCMP_CMP_GE": lambda x, v, _m: x >= v,
           "SCMP_CMP_MASKED_EQ": lambda x, v, m: x & m == v & m}
    for op, ref in ops.items():
        for _ in range(6):
            value = rnd.choice(edges + [rnd.getrandbits(64)])
            mask = rnd.choice(edges + [rnd.getrandbits(64)])
            cond = {"index": 2, "value": mask if op == "SCMP_CMP_MASKED_EQ" else value, "op": op}
            if op == "SCMP_CMP_MASKED_EQ":
                cond["valueTwo"] = value
            prof = {"defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77, "args": [cond]}]}
            p = S.compile_profile(prof, "x86_64", ())
            for x in edges + [value, value ^ 1, (value + 1) % (1 << 64), (value - 1) % (1 << 64),
                              rnd.getrandbits(64)]:
                want = S.RET_ERRNO | 77 if ref(x, value, mask) else S.RET_ALLOW
                assert run_bpf(p, T.X86_64["ioctl"], S.AUDIT_ARCH_X86_64, (0, 0, x)) == want, (op, hex(x), hex(value))


def test_and_or_of_conditions_and_far_jumps():
    # two different indexes: AND; the same index twice: OR (runc's reading of docker profiles)
    prof = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5, "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 2, "op": "SCMP_CMP_EQ"}]},
        {"names": ["write"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
        # many conditional calls: the tree's jumps span more than 255 instructions
        *({"names": [n], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_GT"}]}
          for n in list(T.X86_64)[10:200]),
    ]}
    p = S.compile_profile(prof, "x86_64", ())
    assert len(p) // 8 > 600
    A, t = S.AUDIT_ARCH_X86_64, T.X86_64
    assert run_bpf(p, t["read"], A, (1, 2)) == S.RET_ALLOW
    assert run_bpf(p, t["read"], A, (1, 3)) == S.RET_ERRNO | 5
    assert run_bpf(p, t["write"], A, (2,)) == S.RET_ALLOW
    assert run_bpf(p, t["write"], A, (3,)) == S.RET_ERRNO | 5
    for n in list(T.X86_64)[10:200]:
        assert run_bpf(p, t[n], A, (0, 10)) == S.RET_ALLOW, n
        assert run_bpf(p, t[n], A, (0, 9)) == S.RET_ERRNO | 5, n


@pytest.mark.parametrize("doc,msg", [
    ("[]", "must be a JSON object"),
    ('{"defaultAction": "SCMP_ACT_NOPE"}', "defaultAction 'SCMP_ACT_NOPE'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "X"}]}', "syscalls[0]: action"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
     ' "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}', "index must be 0-5"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}', "unknown architecture"),
    ("{nope", "not valid JSON"),
])
def test_bad_profiles_are_one_line_errors(doc, msg):
    with pytest.raises(S.ProfileError) as e:
        S.parse_profile(doc, "p.json")
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_precompiled_default_is_what_the_compiler_makes_today():
    """runtime/seccomp_default.py (regenerate: python -m runtime.gen_syscall_tables) must not
    drift from runtime.seccomp's policy or compiler."""
    for machine in S.HOSTS:
        assert S._precompiled(machine) == S.compile_profile(S.DEFAULT_PROFILE, machine, DEFAULT_CAPABILITIES)
        assert S.program_for("default", DEFAULT_CAPABILITIES, machine) == S._precompiled(machine)
    caps = DEFAULT_CAPABILITIES + ("CAP_SYS_ADMIN",)
    assert S.program_for("default", caps, "x86_64") == S.compile_profile(S.DEFAULT_PROFILE, "x86_64", caps)


def test_program_is_cached_per_process():
    a = S.program_for("default", DEFAULT_CAPABILITIES)
    assert S.program_for("default", DEFAULT_CAPABILITIES) is a
    assert S.program_for("unconfined", DEFAULT_CAPABILITIES) is None


@pytest.mark.skipif(os.uname().machine not in S.HOSTS, reason="no syscall table for this machine")
def test_the_kernel_runs_the_program():
    """Install the default program in a forked child and make the calls for real."""
    prog = S.program_for("default", DEFAULT_CAPABILITIES)
    libc = ctypes.CDLL(None, use_errno=True)
    t = getattr(T, S.SECTIONS[S.HOSTS[os.uname().machine][0]][1])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            from runtime import syscalls as sc
            sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
            sc.seccomp_filter(prog)
            out = {}
            for name, args in (("keyctl", (0, -3, 0)), ("add_key", (b"user", b"k", b"v", 1, -3)),
                               ("request_key", (b"user", b"k", None, 0)), ("unshare", (0x10000000,)),
                               ("mount", (b"none", b"/", b"tmpfs", 0, None)), ("clone3", (None, 0)),
                               ("userfaultfd", (0,)), ("bpf", (0, None, 0)), ("getpid", ())):
                ctypes.set_errno(0)
                rc = libc.syscall(t[name], *args)
                out[name] = 0 if rc >= 0 else ctypes.get_errno()
            with open("/proc/self/status") as f:
                out["mode"] = [ln.split()[1] for ln in f if ln.startswith("Seccomp:")][0]
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert out["mode"] == "2"
    assert out["getpid"] == 0
    assert out["clone3"] == errno.ENOSYS
    for name in ("keyctl", "add_key", "request_key", "unshare", "mount", "userfaultfd", "bpf"):
        assert out[name] == errno.EPERM, (name, out)


def test_all_capabilities_are_known_to_the_profile():
    for r in S.DEFAULT_PROFILE["syscalls"]:
        for k in ("includes", "excludes"):
            for c in (r.get(k) or {}).get("caps", []):
                assert c in CAPABILITY_NUMBERS, c
