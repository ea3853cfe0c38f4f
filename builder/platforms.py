"""Platforms and the emulation that runs foreign ones.

Owns: platform strings as BuildKit normalizes them (`normalize("linux/arm64/v8") ==
"linux/arm64"`, `"linux/arm"` → `"linux/arm/v7"`, `"aarch64"` → `"linux/arm64"`), `parse_list`
for `--platform P1,P2`, `host()`, the automatic ARGs (`automatic_args(build, target)`), and
binfmt_misc emulation: `emulation_status(arch)` (is a handler for that architecture registered,
enabled, with the F flag, and its interpreter present?), `require_emulation(platform)` (the
one-line error naming the architecture and `pybuild setup emulation`), and
`setup_emulation(arches)` (mount binfmt_misc when needed, register Debian's qemu-user-static
handlers from /usr/lib/binfmt.d with the F flag; idempotent, reports every action).

Why the F flag: with it the kernel opens the interpreter when the handler is registered, so a
foreign binary runs inside a container whose root (after pivot_root) has no
/usr/libexec/qemu-binfmt at all. Kernels ≥ 6.7 give binfmt_misc one instance per user namespace
but fall back to the nearest ancestor's, so the host's handlers serve our user namespaces too.

Must not: register handlers on its own (only `setup_emulation`, called by `pybuild setup
emulation`, writes to binfmt_misc), import rich/lark, or know about images beyond strings.
"""
from __future__ import annotations

import os
from pathlib import Path

from builder.errors import PybuildError, UsageError
from runtime.record import Record

BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_D = (Path("/etc/binfmt.d"), Path("/run/binfmt.d"), Path("/usr/lib/binfmt.d"))  # systemd's order
SETUP_COMMAND = "pybuild setup emulation"

# uname -m spellings and aliases → the OCI architecture
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm",
                 "i386": "386", "i686": "386", "x86": "386", "ppc64el": "ppc64le", "mips64el": "mips64le"}
# OCI architecture → (QEMU's name, ELF class 1/2, ELF data 1 LE / 2 BE, e_machine)
_ELF = {"amd64": ("x86_64", 2, 1, 62), "arm64": ("aarch64", 2, 1, 183), "arm": ("arm", 1, 1, 40),
        "386": ("i386", 1, 1, 3), "ppc64le": ("ppc64le", 2, 1, 21), "s390x": ("s390x", 2, 2, 22),
        "riscv64": ("riscv64", 2, 1, 243), "mips64le": ("mips64el", 2, 1, 8), "loong64": ("loongarch64", 2, 1, 258)}
_OTHER_ARCHES = ("mips", "mipsle", "mips64", "ppc64", "sparc64", "wasm")


def normalize(spec: str) -> str:
    """`os/arch[/variant]` (or a bare arch, meaning linux) as BuildKit/containerd normalize it."""
    s = spec.strip().lower()
    parts = s.split("/")
    if len(parts) == 1 and parts[0]:
        if parts[0] not in _ELF and parts[0] not in _ARCH_ALIASES and parts[0] not in _OTHER_ARCHES:
            raise UsageError(f"invalid platform {spec!r}: unknown operating system or architecture")
        parts = ["linux", parts[0]]
    if len(parts) not in (2, 3) or not all(p and all(c.isalnum() or c in "_-" for c in p) for p in parts):
        raise UsageError(f"invalid platform {spec!r}: expected os/arch[/variant]")
    os_, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else ""
    if parts[1] in ("armel",) and not variant:
        variant = "v6"
    if arch == "arm64" and variant == "v8":
        variant = ""  # containerd: arm64's default variant is dropped
    elif arch == "arm" and not variant:
        variant = "v7"
    elif arch == "amd64" and variant == "v1":
        variant = ""
    return f"{os_}/{arch}" + (f"/{variant}" if variant else "")


def parse_list(spec: str) -> tuple[str, ...]:
    """`P1,P2,…` normalized, duplicates dropped, order kept."""
    out = [normalize(p) for p in spec.split(",") if p.strip()]
    if not out:
        raise UsageError("--platform needs at least one os/arch")
    return tuple(dict.fromkeys(out))


def split(platform: str) -> tuple[str, str, str]:
    """(os, architecture, variant) of a normalized platform."""
    os_, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    return os_, arch, variant


def host() -> str:
    m = os.uname().machine
    return normalize(f"linux/{m}" + ("/v7" if m == "armv7l" else ""))


def automatic_args(build: str, target: str) -> dict[str, str]:
    """The predefined platform ARGs BuildKit gives a build (every value, including empty variants)."""
    bos, barch, bvar = split(build)
    tos, tarch, tvar = split(target)
    return {"BUILDPLATFORM": build, "BUILDOS": bos, "BUILDARCH": barch, "BUILDVARIANT": bvar,
            "TARGETPLATFORM": target, "TARGETOS": tos, "TARGETARCH": tarch, "TARGETVARIANT": tvar}


# -- emulation ------------------------------------------------------------------------------

class Handler(Record):
    """One binfmt_misc entry as /proc/sys/fs/binfmt_misc/NAME shows it."""

    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes


class EmulationStatus(Record):
    arch: str
    ready: bool
    reason: str = ""  # why not, in a few words
    handler: str = ""  # the handler's name when one matches


def _elf_header(arch: str) -> bytes | None:
    spec = _ELF.get(arch)
    if spec is None:
        return None
    _q, cls, data, machine = spec
    order = "little" if data == 1 else "big"
    return (b"\x7fELF" + bytes([cls, data, 1, 0]) + bytes(8) + (2).to_bytes(2, order)
            + machine.to_bytes(2, order))


def read_handlers(root: Path = BINFMT) -> list[Handler]:
    out = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return out
    for name in names:
        if name in ("register", "status"):
            continue
        try:
            text = (root / name).read_text()
        except OSError:
            continue
        enabled, interp, flags, offset, magic, mask = False, "", "", 0, b"", b""
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if line == "enabled":
                enabled = True
            elif k == "interpreter":
                interp = v
            elif k == "flags:":
                flags = v
            elif k == "offset":
                offset = int(v or 0)
            elif k == "magic":
                magic = bytes.fromhex(v)
            elif k == "mask":
                mask = bytes.fromhex(v)
        out.append(Handler(name, enabled, interp, flags, offset, magic, mask))
    return out


def _matches(h: Handler, header: bytes) -> bool:
    if not h.magic:
        return False
    part = header[h.offset:h.offset + len(h.magic)]
    if len(part) < len(h.magic):
        return False
    mask = h.mask or b"\xff" * len(h.magic)
    return all((a & m) == (b & m) for a, b, m in zip(part, h.magic, mask))


def emulation_status(arch: str, root: Path = BINFMT) -> EmulationStatus:
    """Can this machine run `arch` binaries (natively, or through a usable binfmt_misc handler)?"""
    arch = split(normalize(arch))[1]
    if arch == split(host())[1]:
        return EmulationStatus(arch, True, "native")
    header = _elf_header(arch)
    if header is None:
        return EmulationStatus(arch, False, f"no emulator is known for {arch}")
    if not (root / "status").exists():
        return EmulationStatus(arch, False, f"binfmt_misc is not mounted at {root}")
    if (root / "status").read_text().strip() != "enabled":
        return EmulationStatus(arch, False, "binfmt_misc is disabled")
    for h in read_handlers(root):
        if not _matches(h, header):
            continue
        if not h.enabled:
            return EmulationStatus(arch, False, f"handler {h.name} is disabled", h.name)
        if "F" not in h.flags:
            return EmulationStatus(arch, False, f"handler {h.name} lacks the F flag (its interpreter "
                                                "cannot be found inside a container)", h.name)
        return EmulationStatus(arch, True, "", h.name)
    return EmulationStatus(arch, False, f"no binfmt_misc handler for {_ELF[arch][0]} is registered")


def require_emulation(platform: str) -> None:
    """Raise the one-line error when `platform`'s binaries cannot run here."""
    st = emulation_status(split(platform)[1])
    if not st.ready:
        raise PybuildError(f"cannot run {platform} binaries: {st.reason}; run `{SETUP_COMMAND}` as root "
                           "(needs Debian's qemu-user-static)")


def _unescape(s: str) -> bytes:
    """binfmt.d's \\xHH escapes (the kernel reads them too; we only need the bytes to compare)."""
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) + 0 and s[i + 1] == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out.append(ord(s[i]))
            i += 1
    return bytes(out)


class Rule(Record):
    """One binfmt.d line: `:name:type:offset:magic:mask:interpreter:flags`."""

    name: str
    line: str
    interpreter: str
    flags: str
    magic: bytes
    mask: bytes
    offset: int


def qemu_rules(dirs: tuple[Path, ...] = BINFMT_D) -> dict[str, Rule]:
    """Debian's qemu-user-static rules (file name → rule), earlier directories winning."""
    rules: dict[str, Rule] = {}
    for d in dirs:
        try:
            files = sorted(os.listdir(d))
        except OSError:
            continue
        for fn in files:
            if not (fn.startswith("qemu-") and fn.endswith(".conf")) or fn in rules:
                continue
            for line in (d / fn).read_text().splitlines():
                line = line.strip()
                if not line or line[0] in "#;":
                    continue
                sep = line[0]
                f = line[1:].split(sep)
                if len(f) < 7:
                    continue
                rules[fn] = Rule(f[0], line, f[5], f[6], _unescape(f[3]), _unescape(f[4]), int(f[2] or 0))
                break
    return {r.name: r for r in rules.values()}


def _mount_binfmt(root: Path) -> bool:
    """Mount binfmt_misc at `root` when it is not; True when we mounted it."""
    if (root / "status").exists():
        return False
    from runtime import syscalls

    syscalls.mount("binfmt_misc", str(root), "binfmt_misc", 0, None)
    return True


def setup_emulation(arches: tuple[str, ...] = (), *, root: Path = BINFMT,
                    rules_dirs: tuple[Path, ...] = BINFMT_D) -> list[str]:
    """Register (with the F flag) the qemu-user-static handlers for `arches` (default: every one
    Debian ships). Idempotent: a handler already registered with F is left alone; one without F
    is replaced. Returns one line per action, for the user to read."""
    if os.geteuid() != 0:
        raise PybuildError("setting up emulation writes to binfmt_misc: run it as root")
    rules = qemu_rules(rules_dirs)
    if not rules:
        raise PybuildError("no qemu-user-static rules in /usr/lib/binfmt.d; install them: apt-get install qemu-user-static")
    wanted: dict[str, Rule] = {}
    for a in arches:
        arch = split(normalize(a))[1]
        if arch == split(host())[1]:
            continue
        header = _elf_header(arch)
        hit = [r for r in rules.values() if header is not None and
               _matches(Handler(r.name, True, r.interpreter, r.flags, r.offset, r.magic, r.mask), header)]
        if not hit:
            raise PybuildError(f"no qemu-user-static rule for {arch} in /usr/lib/binfmt.d")
        wanted[hit[0].name] = hit[0]
    if not arches:
        wanted = rules
    lines: list[str] = []
    try:
        if _mount_binfmt(root):
            lines.append(f"mounted binfmt_misc at {root}")
    except OSError as e:
        raise PybuildError(f"cannot mount binfmt_misc at {root}: {e.strerror}") from None
    have = {h.name: h for h in read_handlers(root)}
    for name, r in sorted(wanted.items()):
        if not os.path.exists(r.interpreter):
            lines.append(f"{name}: skipped, {r.interpreter} is missing")
            continue
        h = have.get(name)
        if h is not None and "F" in h.flags and h.enabled and h.interpreter == r.interpreter:
            lines.append(f"{name}: already registered ({h.interpreter}, flags {h.flags})")
            continue
        if h is not None:  # wrong flags or interpreter: replace it
            (root / name).write_text("-1")
            lines.append(f"{name}: removed the old handler (flags {h.flags or '-'})")
        flags = r.flags if "F" in r.flags else r.flags + "F"
        line = r.line[:len(r.line) - len(r.flags)] + flags if r.line.endswith(r.flags) else r.line + flags
        try:
            (root / "register").write_text(line)
        except OSError as e:
            raise PybuildError(f"registering {name} failed: {e.strerror}") from None
        lines.append(f"{name}: registered {r.interpreter} (flags {flags})")
    return lines
