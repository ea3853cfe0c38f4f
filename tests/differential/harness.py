"""The differential harness: build each case with pybuild and with the reference BuildKit
(docker 28.5's, through `../shared/tools/buildkit-reference`), reduce both images to one
normalised "verdict" (fsmanifest), and compare.

Owns: the shared base images (one busybox rootfs tarball with several users and groups,
imported into both builders with the same config; plus a small `pdfiles` image for
`COPY --from=IMAGE`), writing a case's context (modes, owners, mtimes, symlinks, hardlinks,
fifos, archives: what git cannot hold), running the builds in batches (pybuild: one store, two
at a time; reference: several `buildx build` at once, one `docker save` for all), and the
recorded verdicts in expected/<case>.json. Must not: change either builder's behaviour or
hide a difference on one side only (every normalisation is in fsmanifest and applies to both).
"""
from __future__ import annotations

import gzip
import bz2
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.differential import fsmanifest as fm

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXPECTED = HERE / "expected"
TOOL = REPO.parent / "shared" / "tools" / "buildkit-reference"
PREFIX = "pdiff-"  # every image this suite makes in the reference daemon is named pdiff-*
BASE = "pdbase"
FILES_IMAGE = "pdfiles"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
svc:x:999:998:service:/srv/svc:/bin/sh
alice:x:1000:1000:alice:/home/alice:/bin/sh
bob:x:1001:1001:bob:/home/bob:/bin/sh
nohome:x:1002:1002::/nonexistent:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
staff:x:50:alice,bob
users:x:100:svc
svcgrp:x:998:
alice:x:1000:
bob:x:1001:
nohome:x:1002:
dev:x:2000:alice,bob
ops:x:2001:alice,root
nogroup:x:65534:
"""


# ---------------------------------------------------------------- context specs
class F:
    """A regular file in a generated context or archive."""

    def __init__(self, data: str | bytes = "", mode: int = 0o644, uid: int = 0, gid: int = 0,
                 xattrs: dict[str, bytes] | None = None) -> None:
        self.data = data.encode() if isinstance(data, str) else data
        self.mode, self.uid, self.gid, self.xattrs = mode, uid, gid, xattrs or {}


class D:
    def __init__(self, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.mode, self.uid, self.gid = mode, uid, gid


class L:
    def __init__(self, target: str) -> None:
        self.target = target


class H:
    """A hardlink to another path of the same context/archive (written after it)."""

    def __init__(self, other: str) -> None:
        self.other = other


class Fifo:
    pass


class Archive:
    """A tar archive file (compression: none, gz, bz2, xz, zst) built from member specs."""

    def __init__(self, members: dict, compression: str = "none", mode: int = 0o644) -> None:
        self.members, self.compression, self.mode = members, compression, mode

    def data(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name, spec in self.members.items():
                ti = tarfile.TarInfo(name)
                ti.mtime = fm.T_ARCHIVE
                if isinstance(spec, (str, bytes)):
                    spec = F(spec)
                if isinstance(spec, F):
                    ti.size, ti.mode, ti.uid, ti.gid = len(spec.data), spec.mode, spec.uid, spec.gid
                    ti.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                                      for k, v in spec.xattrs.items()}
                    tf.addfile(ti, io.BytesIO(spec.data))
                    continue
                if isinstance(spec, D):
                    ti.type, ti.mode, ti.uid, ti.gid = tarfile.DIRTYPE, spec.mode, spec.uid, spec.gid
                elif isinstance(spec, L):
                    ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, spec.target, 0o777
                elif isinstance(spec, H):
                    ti.type, ti.linkname = tarfile.LNKTYPE, spec.other
                tf.addfile(ti)
        raw = buf.getvalue()
        if self.compression == "gz":
            return gzip.compress(raw, mtime=0)
        if self.compression == "bz2":
            return bz2.compress(raw)
        if self.compression == "xz":
            return lzma.compress(raw)
        if self.compression == "zst":
            import zstandard
            return zstandard.ZstdCompressor().compress(raw)
        return raw


def write_tree(root: Path, files: dict) -> None:
    """Write specs under root (parents 0755 root), then stamp every entry with T_CONTEXT."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, spec in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, (str, bytes)):
            spec = F(spec)
        if isinstance(spec, Archive):
            p.write_bytes(spec.data())
            os.chmod(p, spec.mode)
        elif isinstance(spec, F):
            p.write_bytes(spec.data)
            os.chown(p, spec.uid, spec.gid)
            os.chmod(p, spec.mode)
            for k, v in spec.xattrs.items():
                os.setxattr(p, k, v)
        elif isinstance(spec, D):
            p.mkdir(exist_ok=True)
            os.chown(p, spec.uid, spec.gid)
            os.chmod(p, spec.mode)
        elif isinstance(spec, L):
            p.symlink_to(spec.target)
        elif isinstance(spec, H):
            os.link(root / spec.other, p)
        elif isinstance(spec, Fifo):
            os.mkfifo(p)
        else:
            raise TypeError(f"{rel}: unknown spec {spec!r}")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (fm.T_CONTEXT, fm.T_CONTEXT), follow_symlinks=False)
    os.utime(root, (fm.T_CONTEXT, fm.T_CONTEXT))


class Case:
    def __init__(self, name: str, dockerfile: str, files: dict | None = None, *, args: dict | None = None,
                 target: str | None = None, dockerignore: str | None = None, xfail: str | None = None,
                 history: bool = True, secrets: dict[str, str] | None = None) -> None:
        self.name, self.dockerfile, self.files = name, dockerfile, files or {}
        self.args, self.target, self.dockerignore, self.xfail = args or {}, target, dockerignore, xfail
        self.history = history
        self.secrets = secrets or {}  # id -> content, given as --secret id=ID,src=FILE to both

    def write(self, ctx: Path) -> Path:
        write_tree(ctx, dict(self.files))
        (ctx / "Dockerfile").write_text(self.dockerfile.lstrip("\n"))
        if self.dockerignore is not None:
            (ctx / ".dockerignore").write_text(self.dockerignore)
        for n in ("Dockerfile", ".dockerignore"):
            if (ctx / n).exists():
                os.utime(ctx / n, (fm.T_CONTEXT, fm.T_CONTEXT))
        os.utime(ctx, (fm.T_CONTEXT, fm.T_CONTEXT))
        return ctx

    def flags(self, ctx: Path | None = None) -> list[str]:
        out = []
        for sid, content in sorted(self.secrets.items()):
            assert ctx is not None
            f = ctx.parent / f"{ctx.name}.secret-{sid}"  # outside the context
            f.write_text(content)
            out += ["--secret", f"id={sid},src={f}"]
        for k, v in self.args.items():
            out += ["--build-arg", k if v is None else f"{k}={v}"]
        if self.target:
            out += ["--target", self.target]
        return out


# ---------------------------------------------------------------- base images
def make_base_tar(dest: Path, work: Path) -> Path:
    from tests.fixtures.busybox_rootfs import make_busybox_rootfs

    rf = make_busybox_rootfs(work / "base-rootfs")
    (rf / "etc" / "passwd").write_text(PASSWD)
    (rf / "etc" / "group").write_text(GROUP)
    shutil.rmtree(rf / "home" / "app", ignore_errors=True)
    (rf / "home" / "alice").mkdir(parents=True, exist_ok=True)
    os.chown(rf / "home" / "alice", 1000, 1000)
    os.chmod(rf / "home" / "alice", 0o750)
    (rf / "srv").mkdir(exist_ok=True)
    (rf / "opt" / "real").mkdir(parents=True, exist_ok=True)
    (rf / "opt" / "real" / "keep.txt").write_text("kept\n")
    (rf / "opt" / "absdir").symlink_to("/opt/real")
    (rf / "opt" / "reldir").symlink_to("real")
    (rf / "opt" / "dangling").symlink_to("/opt/nowhere")
    (rf / "opt" / "tofile").symlink_to("real/keep.txt")
    (rf / "data").mkdir(exist_ok=True)
    os.chown(rf / "data", 1000, 2000)
    os.chmod(rf / "data", 0o2775)
    _tar_tree(rf, dest)
    return dest


def make_files_tar(dest: Path, work: Path) -> Path:
    root = work / "files-rootfs"
    write_tree(root, {
        "srv/app/bin/tool": F("#!/bin/sh\necho tool\n", mode=0o4755, uid=0, gid=0),
        "srv/app/conf/app.conf": F("k=v\n", mode=0o640, uid=1000, gid=2000),
        "srv/app/data": D(0o2770, 1001, 50),
        "srv/app/data/x": F("x\n", mode=0o600, uid=1001, gid=1001),
        "srv/app/link": L("conf/app.conf"),
        "srv/app/hard1": F("hard\n", mode=0o644, uid=999, gid=998),
        "srv/app/hard2": H("srv/app/hard1"),
        "srv/shared": D(0o1777, 0, 0),
        "etc/passwd": F(PASSWD),
        "etc/group": F(GROUP),
    })
    os.chown(root / "srv" / "app", 1000, 1000)
    os.chmod(root / "srv" / "app", 0o750)
    _tar_tree(root, dest)
    return dest


def _tar_tree(root: Path, dest: Path) -> None:
    """A deterministic tar of root: sorted, numeric owners, every mtime T_BASE."""
    def filt(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.mtime = fm.T_BASE
        ti.uname = ti.gname = ""
        return ti

    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            if rel == ".":
                tf.add(dirpath, arcname=".", recursive=False, filter=filt)
            for n in sorted(dirnames + filenames):
                full = os.path.join(dirpath, n)
                arc = os.path.normpath(os.path.join(rel, n))
                tf.add(full, arcname=arc, recursive=False, filter=filt)


def base_tars(work: Path) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    return {BASE: make_base_tar(work / "base.tar", work), FILES_IMAGE: make_files_tar(work / "files.tar", work)}


# ---------------------------------------------------------------- pybuild side
def pybuild_env(root: Path) -> dict:
    e = dict(os.environ)
    e["PYBUILD_ROOT"] = str(root)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.pop("SOURCE_DATE_EPOCH", None)
    return e


def pybuild_bases(root: Path, tars: dict[str, Path]) -> None:
    from builder.layers.rootfs import import_rootfs
    from builder.oci.config import ContainerConfig
    from builder.oci.layout import ImageStore

    store = ImageStore(root).ensure()
    for name, tar in tars.items():
        import_rootfs(store, tar, name, config=ContainerConfig(env=(PATH_ENV,), cmd=("/bin/sh",)),
                      created="2014-05-13T16:53:20Z")


def pybuild_build(root: Path, case: Case, ctx: Path) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "builder.cli", "build", "--progress=plain", "-t", PREFIX + case.name,
           *case.flags(ctx), str(ctx)]
    r = subprocess.run(cmd, env=pybuild_env(root), capture_output=True, timeout=300)
    return r.returncode, r.stderr.decode(errors="replace")


def pybuild_image(root: Path, ref: str) -> tuple[dict, list]:
    """(config dict, [layer stream factories]) of an image in a pybuild store."""
    from builder.layers.unpack import open_layer_stream
    from builder.oci.image import Image
    from builder.oci.layout import ImageStore

    store = ImageStore(root)
    img = Image.load(store.blobs, store.resolve(ref))
    cfg = json.loads(img.config_bytes)
    blobs = root / "blobs" / "sha256"

    def opener(desc):
        return lambda: open_layer_stream(open(blobs / desc.digest.split(":")[1], "rb"), desc.media_type)

    return cfg, [opener(d) for d in img.layers]


# ---------------------------------------------------------------- reference side
def reference_env() -> dict | None:
    """The reference's environment when it is installed and running, else None."""
    if not TOOL.exists() or os.geteuid() != 0:
        return None
    r = subprocess.run([str(TOOL), "status"], capture_output=True)
    if r.returncode != 0:
        return None
    out = subprocess.run([str(TOOL), "env"], capture_output=True, text=True, check=True).stdout
    env = dict(os.environ)
    for part in out.replace("export ", "").split():
        k, _, v = part.partition("=")
        env[k] = v
    return env


def docker(env: dict, *args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([env["DOCKER"], *args], env=env, capture_output=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {r.stderr.decode(errors='replace')[-2000:]}")
    return r


def reference_bases(env: dict, tars: dict[str, Path]) -> None:
    for name, tar in tars.items():
        docker(env, "import", "-c", 'CMD ["/bin/sh"]', "-c", "ENV " + PATH_ENV, str(tar), f"{name}:latest")


def reference_build(env: dict, case: Case, ctx: Path) -> tuple[int, str]:
    # --no-cache: BuildKit's cache keys ignore mtimes, so a layer cached by an earlier run (say of
    # a base imported with other mtimes) would leak into this verdict
    r = docker(env, "buildx", "build", "--no-cache", "--network", "host", "--progress=plain", "-t", PREFIX + case.name,
               *case.flags(ctx), str(ctx), check=False)
    return r.returncode, r.stderr.decode(errors="replace")


def reference_images(env: dict, names: list[str], work: Path) -> dict[str, tuple[dict, list]]:
    """name -> (config, layer openers) for images in the reference, via one `docker save`."""
    out: dict[str, tuple[dict, list]] = {}
    if not names:
        return out
    tar = work / "reference-save.tar"
    docker(env, "save", "-o", str(tar), *[f"{n}:latest" for n in names], timeout=600)
    dest = work / "reference-save"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    with tarfile.open(tar) as tf:
        tf.extractall(dest, filter="fully_trusted")
    tar.unlink()
    for item in json.loads((dest / "manifest.json").read_text()):
        cfg = json.loads((dest / item["Config"]).read_text())
        openers = [(lambda p=dest / lp: open(p, "rb")) for lp in item["Layers"]]
        for tag in item.get("RepoTags") or []:
            out[tag.rsplit(":", 1)[0].split("/")[-1]] = (cfg, openers)
    return out


# ---------------------------------------------------------------- verdicts
def listing(layers: list) -> dict[str, dict]:
    streams = []
    try:
        for op in layers:
            streams.append(op())
        return fm.replay(streams)
    finally:
        for s in streams:
            s.close()


def verdict(case: Case, rc: int, log: str, image: tuple[dict, list] | None,
            base: tuple[dict, list, dict]) -> dict:
    if rc != 0:
        return {"case": case.name, "fails": True}
    cfg, layers = image  # type: ignore[misc]
    base_cfg, base_layers, base_listing = base
    final = listing(layers)
    v: dict = {"case": case.name, "fails": False, "config": fm.config_view(cfg)}
    on_base = cfg["rootfs"]["diff_ids"][:1] == base_cfg["rootfs"]["diff_ids"][:1]
    if on_base:
        v["fs"] = fm.diff_against(final, base_listing)
        skip = len(base_cfg.get("history") or [])
    else:
        v["fs"] = {"full": dict(sorted(final.items()))}
        skip = 0
    if case.history:
        v["history"] = fm.history_view(cfg, skip)
    return v


def load_expected(name: str) -> dict | None:
    p = EXPECTED / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def save_expected(v: dict) -> None:
    EXPECTED.mkdir(exist_ok=True)
    p = EXPECTED / f"{v['case']}.json"
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(v, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, p)


def explain(want: dict, got: dict) -> str:
    """The differences between two verdicts, one per line (for assertion messages)."""
    if want.get("fails") != got.get("fails"):
        return f"reference {'fails' if want.get('fails') else 'succeeds'}, pybuild " \
               f"{'fails' if got.get('fails') else 'succeeds'}"
    lines = []
    for k in sorted(set(want.get("config", {})) | set(got.get("config", {}))):
        a, b = want.get("config", {}).get(k), got.get("config", {}).get(k)
        if a != b:
            lines.append(f"config {k}: reference {a!r} pybuild {b!r}")
    if want.get("history") != got.get("history"):
        lines.append(f"history: reference {want.get('history')} pybuild {got.get('history')}")
    wf, gf = want.get("fs", {}), got.get("fs", {})
    if set(wf) != set(gf):
        lines.append(f"fs: reference based on base={'changed' in wf}, pybuild {'changed' in gf}")
    else:
        for sect in ("changed", "full"):
            a, b = wf.get(sect, {}), gf.get(sect, {})
            for p in sorted(set(a) | set(b)):
                if a.get(p) != b.get(p):
                    lines.append(f"{p}: reference {a.get(p)} pybuild {b.get(p)}")
        if wf.get("removed") != gf.get("removed"):
            lines.append(f"removed: reference {wf.get('removed')} pybuild {gf.get('removed')}")
    return "\n".join(lines)


# ---------------------------------------------------------------- batch runs
def run_pybuild(cases: list[Case], work: Path, jobs: int = 2) -> dict[str, dict]:
    root = work / "pybuild-root"
    tars = base_tars(work / "bases")
    pybuild_bases(root, tars)
    base_cfg, base_layers = pybuild_image(root, BASE)
    base = (base_cfg, base_layers, listing(base_layers))

    def one(case: Case):
        ctx = case.write(work / "ctx" / case.name)
        rc, log = pybuild_build(root, case, ctx)
        image = pybuild_image(root, PREFIX + case.name) if rc == 0 else None
        v = verdict(case, rc, log, image, base)
        v["_log"] = log[-3000:]
        v["_rc"] = rc
        return case.name, v

    with ThreadPoolExecutor(jobs) as ex:
        results = dict(ex.map(one, cases))
    results["__base__"] = {"listing": base[2], "config": fm.config_view(base_cfg)}
    return results


def run_reference(env: dict, cases: list[Case], work: Path, jobs: int = 4) -> dict[str, dict]:
    tars = base_tars(work / "bases")
    reference_bases(env, tars)
    docker(env, "image", "rm", "-f", *[PREFIX + c.name for c in cases], check=False)

    def one(case: Case):
        ctx = case.write(work / "ctx" / case.name)
        return case.name, reference_build(env, case, ctx)

    with ThreadPoolExecutor(jobs) as ex:
        built = dict(ex.map(one, cases))
    ok = [PREFIX + n for n, (rc, _) in built.items() if rc == 0]
    images = reference_images(env, [BASE] + ok, work)
    base_cfg, base_layers = images[BASE]
    base = (base_cfg, base_layers, listing(base_layers))
    results = {}
    for case in cases:
        rc, log = built[case.name]
        v = verdict(case, rc, log, images.get(PREFIX + case.name), base)
        v["_log"] = log[-3000:]
        results[case.name] = v
    results["__base__"] = {"listing": base[2], "config": fm.config_view(base_cfg)}
    docker(env, "image", "rm", "-f", *ok, check=False)
    return results


# `pybuild run -u USER` against `docker run -u USER`: what `id` prints (runc's groups)
RUN_USERS = ("", "alice", "1000", "4242", "alice:ops", "1001:2001", "svc", "bob:2001", "nohome")


def run_ids_pybuild(root: Path) -> dict[str, str]:
    out = {}
    for u in RUN_USERS:
        cmd = [sys.executable, "-m", "builder.cli", "run", "--rm", "--network", "none"]
        cmd += ["-u", u] if u else []
        r = subprocess.run(cmd + [BASE, "sh", "-c", 'id; echo "HOME=$HOME"'], env=pybuild_env(root),
                           capture_output=True, timeout=120)
        out[u or "(image)"] = r.stdout.decode(errors="replace") if r.returncode == 0 else f"exit {r.returncode}"
    return out


def run_ids_reference(env: dict) -> dict[str, str]:
    out = {}
    for u in RUN_USERS:
        r = docker(env, "run", "--rm", "--network", "none", *(["-u", u] if u else []), BASE,
                   "sh", "-c", 'id; echo "HOME=$HOME"', check=False)
        out[u or "(image)"] = r.stdout.decode(errors="replace") if r.returncode == 0 else f"exit {r.returncode}"
    return out


def public(v: dict) -> dict:
    return {k: x for k, x in v.items() if not k.startswith("_")}
