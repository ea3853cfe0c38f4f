"""Volumes: named and anonymous data directories under `$PYBUILD_ROOT/volumes/<name>/`.

Owns: `<name>/_data` (what containers mount) and `<name>/volume.json` (name, created,
labels, anonymous), creating a volume on first use, seeding an empty volume from the image's
content at its mount path (as docker does, once), and which containers use a volume
(read from their config.json). Must not: mount (the sandbox does, as a bind) or start
anything.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from builder.containers.state import NAME_RE, _Lock, all_containers, now_iso, read_json, write_json
from builder.errors import PybuildError


class VolumeError(PybuildError):
    pass


def volumes_dir(root: Path) -> Path:
    return root / "volumes"


def lock(root: Path) -> _Lock:
    volumes_dir(root).mkdir(parents=True, exist_ok=True)
    return _Lock(volumes_dir(root) / ".lock")


def load(root: Path, name: str) -> dict | None:
    if not NAME_RE.match(name):
        return None
    rec = read_json(volumes_dir(root) / name / "volume.json")
    if rec is not None:
        rec["Mountpoint"] = str(volumes_dir(root) / name / "_data")
    return rec


def all_volumes(root: Path) -> list[dict]:
    d = volumes_dir(root)
    out = [load(root, p.name) for p in sorted(d.iterdir())] if d.is_dir() else []
    return [v for v in out if v]


def create(root: Path, name: str | None = None, labels: dict | None = None, *, exist_ok: bool = False,
           owner: str | None = None) -> dict:
    """A volume; anonymous (name None) ones record the container they were made for
    (`owner`), so `rm -v` finds them even if that container's config was never completed."""
    anonymous = name is None
    name = name or os.urandom(32).hex()
    if not NAME_RE.match(name) or len(name) < 2:
        raise VolumeError(f"invalid volume name {name!r}: [a-zA-Z0-9][a-zA-Z0-9_.-]+ only")
    with lock(root):
        rec = load(root, name)
        if rec is not None:
            if exist_ok:
                return rec
            raise VolumeError(f"volume {name} already exists")
        d = volumes_dir(root) / name
        tmp = volumes_dir(root) / f".tmp-{name}-{os.urandom(4).hex()}"
        (tmp / "_data").mkdir(parents=True, mode=0o755)
        write_json(tmp / "volume.json", {"Name": name, "CreatedAt": now_iso(), "Driver": "local",
                                         "Labels": labels or {}, "Anonymous": anonymous, "Scope": "local",
                                         **({"Owner": owner} if anonymous and owner else {})})
        os.rename(tmp, d)
    rec = load(root, name)
    assert rec is not None
    return rec


def seed(rec: dict, view, path: str) -> None:
    """Copy the image's content at `path` into the volume if the volume was never seeded
    and is empty (docker's rule: only a new, empty volume is populated)."""
    from builder.engine.fsview import export_tree

    data = Path(rec["Mountpoint"])
    marker = data.parent / "seeded"
    if marker.exists() or any(data.iterdir()):
        return
    marker.touch()
    resolved = view.resolve(path)
    hit = view.find(resolved)
    if hit is None or not stat.S_ISDIR(hit[1].st_mode):
        return
    export_tree(view, path, data)
    os.chown(data, hit[1].st_uid, hit[1].st_gid)
    os.chmod(data, stat.S_IMODE(hit[1].st_mode))


def users(root: Path, name: str) -> list[str]:
    out = []
    for c in all_containers(root):
        if any(v.get("Name") == name for v in c.config.get("Volumes", [])):
            out.append(c.name or c.id[:12])
    return out


def remove(root: Path, name: str, *, force: bool = False) -> None:
    with lock(root):
        rec = load(root, name)
        if rec is None:
            raise VolumeError(f"no such volume: {name}")
        u = users(root, name)
        if u and not force:
            raise VolumeError(f"volume {name} is in use by container(s) {', '.join(u)}")
        trash = volumes_dir(root) / f".trash-{name}-{os.urandom(4).hex()}"
        os.rename(volumes_dir(root) / name, trash)
    shutil.rmtree(trash, ignore_errors=True)


def prune(root: Path, *, all_: bool = False) -> list[str]:
    """Unused volumes: anonymous ones (docker's default), every unused one with all_."""
    gone = []
    for rec in all_volumes(root):
        if (rec.get("Anonymous") or all_) and not users(root, rec["Name"]):
            try:
                remove(root, rec["Name"])
                gone.append(rec["Name"])
            except VolumeError:
                continue
    return gone
