"""A multi-platform build copies a COPY/ADD once when the result is provably the same on every
platform (engine/copyshare.py), and never when a base makes it differ.

The property checked for every case: each platform's image of a two-platform build is byte for
byte the image a single-platform build of that platform makes (SOURCE_DATE_EPOCH pins the times
a copy gives the directories it creates). The bases are synthetic images per platform (no RUN,
so no emulation) that differ exactly where a plain COPY reads its base: an existing destination
directory's owner/mode/mtime, a symlink on the destination path, /etc/passwd for --chown, a
file where the destination goes. Whether the step was shared is read from the snapshots left
(a shared copy commits one snapshot for both platforms).
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.buildlib import write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]

SDE = "1700000000"
T0 = 1_600_000_000  # the bases' mtimes (before SDE: kept as they are)

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:{uid}:{uid}:app:/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:{uid}:\n"


def _tar(path: Path, entries: list[tuple]) -> Path:
    """entries: (name, kind 'dir'|'file'|'link', mode, uid, mtime, data-or-linkname)."""
    with tarfile.open(path, "w") as t:
        for name, kind, mode, uid, mtime, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, uid, mtime
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, extra
                t.addfile(ti)
            else:
                data = extra.encode()
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return path


def _common(arch: str, uid: int = 1000) -> list[tuple]:
    return [("etc", "dir", 0o755, 0, T0, None), ("etc/passwd", "file", 0o644, 0, T0, PASSWD.format(uid=uid)),
            ("etc/group", "file", 0o644, 0, T0, GROUP.format(uid=uid)),
            ("usr", "dir", 0o755, 0, T0, None), ("usr/local", "dir", 0o755, 0, T0, None),
            ("usr/local/bin", "dir", 0o755, 0, T0, None),
            ("arch", "file", 0o644, 0, T0, f"{arch}\n")]  # the bases always differ somewhere


# per base: what amd64 and arm64 have beyond _common
BASES = {
    "same": ([], []),
    "appdir": ([("app", "dir", 0o700, 7, T0, None)], []),  # /app only in amd64
    "appmode": ([("app", "dir", 0o755, 0, T0, None)], [("app", "dir", 0o750, 0, T0, None)]),
    "apptime": ([("app", "dir", 0o755, 0, T0, None)], [("app", "dir", 0o755, 0, T0 + 60, None)]),
    "applink": ([("app", "dir", 0o755, 0, T0, None)], [("app", "link", 0o777, 0, T0, "usr/local")]),
    "appfile": ([("app", "dir", 0o755, 0, T0, None), ("app/f0", "file", 0o600, 5, T0, "old\n")],
                [("app", "dir", 0o755, 0, T0, None)]),  # a file the copy replaces: never read
    "appsub": ([("app", "dir", 0o755, 0, T0, None), ("app/sub", "dir", 0o700, 7, T0, None)],
               [("app", "dir", 0o755, 0, T0, None)]),
    "users": ([], "uid=2000"),  # another uid for `app` in arm64's /etc/passwd
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("copyshare")
    root = tmp / "root"
    env = {"PYBUILD_ROOT": str(root)}
    for name, (amd, arm) in BASES.items():
        refs = []
        for arch, extra in (("amd64", amd), ("arm64", arm)):
            entries = _common(arch, 2000 if extra == "uid=2000" else 1000)
            entries += extra if isinstance(extra, list) else []
            tar = _tar(tmp / f"{name}-{arch}.tar", entries)
            r = run_cli("import", "--platform", f"linux/{arch}", str(tar), f"{name}-{arch}", env=env)
            assert r.returncode == 0, r.stderr.decode()
            refs.append(f"{name}-{arch}")
        r = run_cli("manifest", "create", name, *refs, env=env)
        assert r.returncode == 0, r.stderr.decode()
    return root


def _copy_store(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst


def _build(root: Path, ctx: Path, platform: str) -> dict[str, str]:
    """platform -> manifest digest of `pybuild build --platform platform`."""
    r = run_cli("build", "--progress=plain", "--platform", platform, "-t", "out", str(ctx),
                env={"PYBUILD_ROOT": str(root), "SOURCE_DATE_EPOCH": SDE})
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    index = json.loads((root / "index.json").read_text())
    entry = next(m for m in index["manifests"]
                 if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == "out")
    blob = json.loads((root / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_text())
    if "manifests" not in blob:
        return {platform: entry["digest"]}
    return {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in blob["manifests"]}


def _snapshots(root: Path) -> int:
    return sum(1 for p in (root / "snapshots").iterdir() if p.is_dir() and len(p.name) == 64)


CASES = [
    # (base, Dockerfile body after FROM, shared?)
    ("same", "COPY files/ /app/files/\nCOPY big /app/\nWORKDIR /app", True),
    ("same", "COPY f /usr/local/bin/", True),
    ("same", "COPY --chown=app:app f /x/y/", True),
    ("same", "COPY --link f /usr/local/bin/", True),
    ("appdir", "COPY files/ /app/files/", False),
    ("appdir", "COPY f /app", False),
    ("appdir", "COPY f /usr/local/bin/", True),  # /app is not on the way: the same layer
    ("appmode", "COPY f /app/", False),
    ("apptime", "COPY f /app/sub/", False),
    ("applink", "COPY f /app/", False),
    ("applink", "COPY files /app/x", False),
    ("appfile", "COPY files/ /app/", True),  # the upper's new file hides the old one either way
    ("appsub", "COPY tree/ /app/", False),  # a directory merged into one the base may have
    ("appsub", "COPY tree/sub/ /app/sub/", False),
    ("users", "COPY --chown=app f /x", False),
    ("users", "COPY --chown=1000:1000 f /x", True),  # numbers: /etc/passwd is not read
]


@pytest.mark.parametrize("base,body,shared", CASES, ids=[f"{b}:{d.splitlines()[0]}" for b, d, _ in CASES])
def test_each_platform_gets_its_single_platform_image(store: Path, tmp_path: Path, base: str, body: str,
                                                      shared: bool) -> None:
    files = {f"files/f{i}": f"file {i}\n" for i in range(20)}
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"FROM {base}\n{body}\n", "f": "f\n", "big": "b" * 300_000,
                                       "tree/sub/g": "g\n", **files})
    os.chmod(ctx / "f", 0o755)
    want = {}
    for p in ("linux/amd64", "linux/arm64"):
        want.update(_build(_copy_store(store, tmp_path / f"one-{p.replace('/', '-')}"), ctx, p))
    multi = _copy_store(store, tmp_path / "multi")
    before = _snapshots(multi)
    got = _build(multi, ctx, "linux/amd64,linux/arm64")
    assert got == want  # each platform's manifest (config, layers) as its own build makes it
    fs_steps = sum(1 for ln in body.splitlines() if ln.split()[0] in ("COPY", "WORKDIR"))
    made = _snapshots(multi) - before - 2  # the two bases' snapshots
    if shared:
        assert made < 2 * fs_steps, "the second platform copied again"
    else:
        assert made == 2 * fs_steps, "a copy whose base differs was shared"
