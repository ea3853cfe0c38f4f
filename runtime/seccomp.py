"""Seccomp: docker's default syscall policy (or a docker-format JSON profile) compiled to a
classic-BPF program that runtime.init installs as the last step before execve.

Owns: the compiler: profile + architecture + the container's capabilities -> `struct
sock_filter[]` bytes (the profiles themselves, docker's default and JSON ones, are
runtime.seccomp_profile's). Must not: install anything (init does, through
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

import os
import struct
from functools import lru_cache


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
from runtime.seccomp_profile import (  # noqa: F401 - re-exported: the profile side
    ACTIONS, DEFAULT_PROFILE, OPS, ProfileError, check_profile, load_profile, parse_profile)


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
                for arg in conds:
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
    machine = machine or host_arch()
    if seccomp == "default" and _kernel_version() >= (4, 8):  # (ptrace's minKernel)
        from runtime import seccomp_default as pre  # compiled ahead of time, see there
        if frozenset(caps) == frozenset(pre.CAPABILITIES):
            return _precompiled(machine)
    return _cached(seccomp, machine, frozenset(caps))


@lru_cache(maxsize=4)
def _precompiled(machine: str) -> bytes:
    import binascii

    from runtime import seccomp_default
    return binascii.a2b_base64("".join(seccomp_default.PROGRAMS[machine]))


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
