"""Inputs every scenario builds from: the busybox base, small-file contexts, mixed data.

Owns: making the same busybox root filesystem (and its tar) that every tool imports, build
contexts of N small files, and deterministic "mixed" data (incompressible, text-like and
zero runs, in files of varied sizes) for layer export. Must not: time anything or call a
builder. Trees are written to fresh directories (ext4 here is slow creating many files right
after deleting many; callers put them on /dev/shm).
"""
from __future__ import annotations

import os
import random
import shutil
import stat
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
PASSWD = ("root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"


def make_busybox_rootfs(dest: Path) -> Path:
    """A busybox root filesystem in `dest`: the shared test fixture when it has landed,
    otherwise the same layout made here from Debian's busybox-static."""
    try:
        from tests.fixtures.busybox_rootfs import make_busybox_rootfs as shared  # type: ignore
    except ImportError:
        shared = None
    if shared is not None:
        shared(dest)
        return dest
    if not BUSYBOX.exists():
        raise FileNotFoundError("busybox-static is not installed (apt-get install busybox-static)")
    for d in ("bin", "etc", "tmp", "root", "home", "var", "usr/bin", "usr/local/bin", "proc",
              "sys", "dev"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin/busybox")
    import subprocess
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        if a != "busybox" and not (dest / "bin" / a).exists():
            (dest / "bin" / a).symlink_to("busybox")
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    return dest


def tar_tree(src: Path, out: Path) -> Path:
    """Tar `src` as a root filesystem (numeric root owner, sorted entries)."""
    def owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        for root, dirs, files in os.walk(src):
            dirs.sort()
            for name in sorted(dirs + files):
                p = Path(root) / name
                t.add(p, arcname=str(p.relative_to(src)), recursive=False, filter=owner)
    return out


def small_files_context(ctx: Path, nfiles: int, seed: int = 1) -> Path:
    """A context with `nfiles` small files (20–2,000 bytes) under files/, 100 per directory."""
    rng = random.Random(seed)
    files = ctx / "files"
    for i in range(nfiles):
        d = files / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.txt").write_bytes(rng.randbytes(rng.randint(10, 1000)).hex().encode())
    return ctx


WORDS = ("layer", "digest", "manifest", "snapshot", "overlay", "context", "stage", "cache",
         "build", "image", "tar", "zstd", "gzip", "sha256", "config", "runtime", "busybox")


def _chunk(rng: random.Random, kind: int, size: int) -> bytes:
    if kind == 0:  # incompressible (already-compressed assets, binaries)
        return rng.randbytes(size)
    if kind == 1:  # text: compresses ~4-8x, like source and logs
        line = " ".join(rng.choice(WORDS) for _ in range(12)) + "\n"
        words = (line * (size // len(line) + 1)).encode()
        # perturb so it is not a single repeated line
        out = bytearray(words[:size])
        for _ in range(size // 512):
            out[rng.randrange(size)] = rng.randrange(32, 127)
        return bytes(out)
    return bytes(size)  # zero runs (sparse files, padding)


def mixed_data(dest: Path, total_bytes: int, seed: int = 7) -> Path:
    """About `total_bytes` of deterministic mixed data under `dest`: a third each of random,
    text-like and zero bytes; 80% of files small (1-64 KiB), the bytes mostly in large files."""
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    i = 0
    # one text template reused, so generating 1 GB stays fast
    while written < total_bytes:
        big = rng.random() < 0.2
        size = rng.randint(1 << 20, 16 << 20) if big else rng.randint(1 << 10, 64 << 10)
        size = min(size, total_bytes - written) or 1
        kind = i % 3
        d = dest / f"d{i // 200:03d}"
        if i % 200 == 0:
            d.mkdir(exist_ok=True)
        with open(d / f"blob{i:05d}.bin", "wb") as f:
            left = size
            while left:
                n = min(left, 4 << 20)
                f.write(_chunk(rng, kind, n))
                left -= n
        written += size
        i += 1
    return dest


def tree_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total
