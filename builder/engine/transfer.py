"""COPY and ADD on the engine side: what the sources are worth (cache inputs) and copying them.

Owns: `copy_inputs` (content digests of context sources, other stages' keys, image digests,
URL checksums/content digests, git commits: what a COPY/ADD key depends on) and `copy_step`
(gathering Items from the context, a stage, an image, heredocs, URLs, git, local archives for
ADD; then Copier writes them into a fresh upper; then commit as a layer).

Must not: decide hits, or read context files .dockerignore excludes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from builder.context import SKIP_XATTRS
from builder.engine.copier import Copier, Item, parse_chmod, resolve_owner
from builder.engine.fsview import LayeredFS, export_tree
from builder.engine.ops import LayerResult, Services, State, _from_state, commit, ensure_snapshots, view_of
from builder.errors import BuildStepError, ContextError
from builder.snapshot import chain_id
from builder.plan.graph import CopyOp, Step
from builder.layers import fstree


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _is_git(s: str) -> bool:
    return s.startswith(("git@", "git://")) or (_is_url(s) and (".git#" in s or s.endswith(".git")))


def _pivot(src: str) -> tuple[str, str]:
    """--parents: `a/./b/c` copies `b/c` (the part after the pivot); no pivot keeps the whole path."""
    if "/./" in src:
        head, _, tail = src.partition("/./")
        return src, tail
    return src, src.lstrip("./") if src.startswith("./") else src


def _dest(op: CopyOp, workdir: str) -> tuple[str, bool]:
    d = op.dest
    trailing = d.endswith("/") or d in (".", "./")
    if not d.startswith("/"):
        d = os.path.join(workdir or "/", d)
    d = os.path.normpath(d)
    if d.startswith("//"):
        d = d[1:]
    return d, trailing


def copy_inputs(sv: Services, step: Step, state: State, source_content) -> list[str]:
    """The digests a COPY/ADD reads (cheap on a rebuild: the context uses the stat cache).

    From a stage or an image: `source_content(source_from, sources)`, the content digests of the
    paths read (engine/contentkey.py), so an unchanged output keeps this step cached."""
    op: CopyOp = step.op  # type: ignore[assignment]
    out: list[str] = []
    if op.source_from is not None:
        out.extend(source_content(op.source_from, op.sources))
        return out
    for src in op.sources:
        if _is_git(src):
            sv.remote_inputs = True  # a remote changes without us knowing: no no-op memo
            out.append(f"git:{src}@{_git_commit(src)}")
        elif _is_url(src):
            sv.remote_inputs = True
            out.append(f"url:{src}@{op.checksum or _download(sv, src, op.checksum)[1]}")
        else:
            ctx = sv.context
            if ctx is None:
                raise ContextError("COPY needs a build context")
            path = src.replace("/./", "/") if op.parents else src
            try:
                for s in ctx.select(path):
                    out.append(f"{s.rel}:{ctx.digest(s)}")
            except ContextError as e:
                raise BuildStepError(e.message, step.span, hint=e.hint) from None
    return out


def _download(sv: Services, url: str, checksum: str | None) -> tuple[Path, str, int | None]:
    """Fetch a URL once per build into tmp; verify --checksum. Returns (file, digest, mtime)."""
    import email.utils
    import urllib.request

    h = hashlib.sha256(url.encode()).hexdigest()[:24]
    dest = Path(sv.tmp) / f"url-{h}"
    meta = Path(str(dest) + ".meta")
    if not dest.exists():
        try:
            with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - the Dockerfile asks for it
                fd, part = tempfile.mkstemp(dir=sv.tmp)
                with os.fdopen(fd, "wb") as f:
                    shutil.copyfileobj(r, f)
                lm = r.headers.get("Last-Modified")
            os.replace(part, dest)
            mtime = int(email.utils.parsedate_to_datetime(lm).timestamp()) if lm else None
            meta.write_text(str(mtime or ""))
        except OSError as e:
            raise BuildStepError(f"ADD {url}: download failed: {e}") from None
    hd = hashlib.sha256()
    with open(dest, "rb") as f:
        while chunk := f.read(1 << 20):
            hd.update(chunk)
    digest = "sha256:" + hd.hexdigest()
    if checksum and checksum != digest:
        raise BuildStepError(f"ADD {url}: checksum mismatch: want {checksum}, got {digest}")
    m = meta.read_text().strip() if meta.exists() else ""
    return dest, digest, int(m) if m else None


def _git_parts(src: str) -> tuple[str, str | None]:
    url, _, ref = src.partition("#")
    return url, (ref.split(":", 1)[0] or None)


def _git_commit(src: str) -> str:
    url, ref = _git_parts(src)
    try:
        r = subprocess.run(["git", "ls-remote", url, ref or "HEAD"], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise BuildStepError("ADD of a git repository needs git installed") from None
    if r.returncode != 0 or not r.stdout.strip():
        raise BuildStepError(f"ADD {src}: cannot resolve {ref or 'HEAD'}: {r.stderr.strip().splitlines()[-1:] or ''}")
    return r.stdout.split()[0]


def _git_clone(sv: Services, src: str, keep_git_dir: bool, into: Path) -> Path:
    url, ref = _git_parts(src)
    subdir = src.partition("#")[2].partition(":")[2]
    dest = into / "git"
    cmd = ["git", "clone", "--quiet", "--recurse-submodules", url, str(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise BuildStepError(f"ADD {src}: git clone failed: {r.stderr.strip()}")
    if ref:
        r = subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", ref], capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildStepError(f"ADD {src}: git checkout {ref} failed: {r.stderr.strip()}")
    if not keep_git_dir:
        fstree.rmtree(dest / ".git", ignore_errors=True)
    return dest / subdir if subdir else dest


def _archive_kind(path: str) -> bool:
    """Whether ADD unpacks this file: a tar, plain or compressed (gzip, bzip2, xz, zstd). A
    compressed file whose content is not a tar is copied as it is, as BuildKit does."""
    import bz2
    import gzip
    import lzma
    import tarfile

    with open(path, "rb") as f:
        head = f.read(6)
        f.seek(0)
        try:
            if head[:4] == b"\x28\xb5\x2f\xfd":
                import zstandard

                block = zstandard.ZstdDecompressor().stream_reader(f).read(512)
            elif head[:2] == b"\x1f\x8b":
                block = gzip.GzipFile(fileobj=f).read(512)
            elif head[:3] == b"BZh":
                block = bz2.BZ2File(f).read(512)
            elif head[:6] == b"\xfd7zXZ\x00":
                block = lzma.LZMAFile(f).read(512)
            else:
                block = f.read(512)
        except (OSError, EOFError, lzma.LZMAError, ValueError):
            return False
    except_types = (tarfile.HeaderError,)
    if len(block) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.EOFHeaderError:
        return True  # an empty archive: two zero blocks
    except except_types:
        return False
    return True


class _AddFilter:
    """tarfile's "tar" filter plus the hardlink checks it lacks (one instance per archive).

    Python's "tar" filter checks where an entry is written but not where a hardlink points:
    with it, `hl -> /etc/shadow` (or `../../host/file`, or `link-to-host-dir/file`) hardlinks a
    HOST file into the extract dir, and the ADD then copies its content into the image. So a
    hardlink target must resolve (symlinks followed) inside the extract dir, as the "data"
    filter demands; we keep the "tar" filter otherwise because ADD preserves owners and modes.
    And, as in tar itself, a hardlink must name a regular file that came EARLIER in the archive:
    tarfile otherwise looks the target up among all members, and a link to itself or to a
    directory (`b -> b/./.`) recursed until RecursionError (a crash, exit 3, for a bad ADD).
    Hardlinks that pass become real hardlinks (tarfile links them), so the layer keeps one inode.

    tarfile restores no xattrs: the filter collects each entry's `SCHILY.xattr.*` records and
    `apply_xattrs` sets them once the archive is out (after tarfile's chown, which would drop
    security.capability), as docker's untar does.
    """

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.xattrs: dict[str, list[tuple[str, bytes]]] = {}  # entry name -> its xattrs (last entry wins)
        self.link_times: dict[str, int] = {}  # symlink name -> its mtime (tarfile sets none on links)

    def __call__(self, member, dest_path: str):
        import tarfile

        m = tarfile.tar_filter(member, dest_path)
        if m is None:
            return None
        # the "tar" filter clears setuid/setgid/sticky and group/other write bits; ADD keeps
        # an archive's modes as they are (BuildKit does), so only its path checks are kept
        m = m.replace(mode=member.mode, deep=False) if member.mode is not None else m
        name = os.path.normpath(m.name)
        if m.islnk():
            if os.path.isabs(m.linkname):
                raise tarfile.AbsoluteLinkError(m)
            dest_real = os.path.realpath(dest_path)
            target = os.path.realpath(os.path.join(dest_real, m.linkname))
            if os.path.commonpath([target, dest_real]) != dest_real:
                raise tarfile.LinkOutsideDestinationError(m, target)
            if os.path.normpath(m.linkname) not in self.files:
                # a FilterError, not an ExtractError: tarfile only logs the latter (errorlevel 1)
                # and then extracts the member unfiltered (a link to a directory became a copy
                # of that directory entry)
                raise tarfile.FilterError(f"hardlink {m.name!r} names {m.linkname!r}, "
                                          "which is not an earlier file in the archive")
        if m.isreg():
            self.files.add(name)
        else:
            self.files.discard(name)
        # BuildKit's unpack keeps security.* attributes (a file capability survives --chown) but
        # not user.* ones (tests/differential add_archive_keeps_member_xattrs)
        xa = [(k[13:], v.encode("utf-8", "surrogateescape")) for k, v in m.pax_headers.items()
              if k.startswith("SCHILY.xattr.") and not k[13:].startswith(SKIP_XATTRS)
              and not k[13:].startswith("user.")]
        if xa and not m.islnk():
            self.xattrs[name] = xa
        else:
            self.xattrs.pop(name, None)  # a later entry of that name replaced the earlier one
        if m.issym():
            self.link_times[name] = int(m.mtime)
        else:
            self.link_times.pop(name, None)
        if not m.isdir():
            # Unlink first (as tar --unlink-first and docker do): tarfile opens an existing
            # path for writing, and a FIFO left there by an earlier entry blocked the build
            # forever; an existing symlink would be written through.
            import stat

            target = os.path.join(dest_path, m.name)
            try:
                if not stat.S_ISDIR(os.lstat(target).st_mode):
                    os.unlink(target)
            except FileNotFoundError:
                pass
        return m


    def apply_xattrs(self, dest_path: str) -> None:
        dest_real = os.path.realpath(dest_path)
        for name, mtime in self.link_times.items():
            target = os.path.join(dest_real, name)
            if os.path.commonpath([os.path.realpath(os.path.dirname(target)), dest_real]) != dest_real:
                continue
            try:
                os.utime(target, (mtime, mtime), follow_symlinks=False)
            except OSError:
                pass
        for name, xa in self.xattrs.items():
            target = os.path.join(dest_real, name)
            # a later entry may have turned a parent into a symlink: never set through one
            if os.path.commonpath([os.path.realpath(os.path.dirname(target)), dest_real]) != dest_real:
                continue
            for k, v in xa:
                try:
                    os.setxattr(target, k, v, follow_symlinks=False)
                except OSError:
                    pass  # not supported here or not permitted (trusted.*): skipped, as docker does


def _extract(path: str, dest: Path) -> None:
    """A local archive for ADD (tar, gzip, bzip2, xz, zstd), unpacked safely into `dest`."""
    import tarfile
    import zlib  # a cut or corrupt gzip stream raises EOFError / zlib.error, not TarError

    if not hasattr(tarfile, "data_filter"):  # extraction filters came in 3.11.4 (PEP 706)
        import platform
        raise BuildStepError(f"ADD of a local archive needs Python 3.11.4 or later (tarfile extraction "
                             f"filters); this is Python {platform.python_version()}")
    dest.mkdir(parents=True, exist_ok=True)
    filt = _AddFilter()
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        try:
            if head == b"\x28\xb5\x2f\xfd":
                import zstandard

                with zstandard.ZstdDecompressor().stream_reader(f) as zr, tarfile.open(fileobj=zr, mode="r|") as tf:
                    tf.extractall(dest, filter=filt)
            else:
                with tarfile.open(fileobj=f, mode="r:*") as tf:
                    tf.extractall(dest, filter=filt)
            filt.apply_xattrs(str(dest))
        except (tarfile.TarError, OSError, KeyError, RecursionError, EOFError, zlib.error) as e:
            # KeyError: tarfile's way of saying a hardlink names a member the archive lacks;
            # RecursionError: its link fallback re-extracting a hardlink over itself (`b/./.`).
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise BuildStepError(f"ADD: cannot extract {os.path.basename(path)}: {msg}") from None


def _gather(sv: Services, step: Step, state: State, work: Path) -> tuple[list[Item], bool]:
    """Items to copy, and whether several sources (or a wildcard) were named."""
    op: CopyOp = step.op  # type: ignore[assignment]
    items: list[Item] = []
    wildcard = False
    for name, data in op.heredocs:
        items.append(Item(name=os.path.basename(name), data=data.encode(), mode=0o644,
                          mtime_ns=None if sv.source_date_epoch is None else sv.source_date_epoch * 10**9))
    if op.source_from is not None:
        src_state = _from_state(sv, op.source_from)
        ensure_snapshots(sv, src_state)
        view = view_of(sv, src_state)
        for i, src in enumerate(op.sources):
            names = _match_in_view(view, src)
            wildcard |= any(c in src for c in "*?[")
            for j, (path, keep) in enumerate(names):
                d = work / f"from-{i}-{j}"
                export_tree(view, path, d)
                items.append(Item(name=os.path.basename(path.rstrip("/")) or "/", path=str(d),
                                  keep=keep if op.parents else "", contents=True, keep_owner=True))
        return items, len(op.sources) > 1 or wildcard
    ctx = sv.context
    for i, src in enumerate(op.sources):
        if _is_git(src):
            if not op.is_add:
                raise BuildStepError("COPY does not take git URLs (use ADD)", step.span)
            items.append(Item(name="", path=str(_git_clone(sv, src, op.keep_git_dir, work)), contents=True))
            continue
        if _is_url(src):
            if not op.is_add:
                raise BuildStepError("COPY does not take URLs (use ADD)", step.span)
            f, _digest, mtime = _download(sv, src, op.checksum)
            base = src.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "index.html"
            data = f.read_bytes()
            items.append(Item(name=base, data=data, mode=0o600,
                              mtime_ns=mtime * 10**9 if mtime is not None else None))
            continue
        assert ctx is not None
        path, keep_full = _pivot(src) if op.parents else (src, "")
        wildcard |= any(c in src for c in "*?[")
        try:
            found = ctx.select(path.replace("/./", "/"))
        except ContextError as e:
            raise BuildStepError(e.message, step.span, hint=e.hint) from None
        for s in found:
            keep = ""
            if op.parents:
                rel_after = s.rel
                if "/./" in src:
                    pre = os.path.normpath(src.partition("/./")[0]).lstrip("./")
                    rel_after = s.rel[len(pre) + 1:] if pre and pre != "." else s.rel
                keep = os.path.dirname(rel_after) if not s.is_dir else rel_after
            if op.is_add and not s.is_dir and op.unpack is not False and _archive_kind(s.abspath):
                d = work / f"add-{i}-{len(items)}"
                _extract(s.abspath, d)
                items.append(Item(name=os.path.basename(s.rel), path=str(d), keep=keep, contents=True,
                                  keep_owner=True, archive=True))
                continue
            items.append(Item(name=s.name or os.path.basename(s.rel) or ".", path=s.abspath, keep=keep,
                              contents=True, ctx_rel=s.rel))
    return items, len(op.sources) + len(op.heredocs) > 1 or wildcard


def _match_in_view(view: LayeredFS, src: str) -> list[tuple[str, str]]:
    """Paths in a stage/image rootfs named by a COPY --from source (wildcards in any component)."""
    import re

    from builder.context import translate

    parts = [p for p in src.split("/") if p and p != "."]
    if not any(c in src for c in "*?["):
        p = "/" + "/".join(parts)
        if not view.exists(view.resolve(p)):
            raise BuildStepError(f'"{src}" not found in the source stage or image')
        return [(p, os.path.dirname(p).lstrip("/"))]
    cands = ["/"]
    for part in parts:
        nxt = []
        rx = re.compile(translate(part)) if any(c in part for c in "*?[") else None
        for c in cands:
            if rx is None:
                nxt.append(c.rstrip("/") + "/" + part)
            else:
                nxt.extend(c.rstrip("/") + "/" + n for n in view.listdir(view.resolve(c)) if rx.match(n))
        cands = [c for c in nxt if view.exists(view.resolve(c))]
    return [(c, os.path.dirname(c).lstrip("/")) for c in sorted(cands)]


def copy_step(sv: Services, step: Step, state: State, cancel=None, shared=None,
              share: str | None = None) -> LayerResult | None:
    """Execute a COPY/ADD. With `shared` (a multiplatform.KeyLocks) and a `share` key
    (copyshare.share_key), a layer another platform's same step wrote is reused when this
    stage's base answers every lookup that copy made the same way (engine/copyshare.py)."""
    if shared is None or share is None:
        return _copy(sv, step, state, cancel)
    from builder.engine.copyshare import Shared

    ensure_snapshots(sv, state)  # (before waiting: this platform's base unpacks meanwhile)
    with shared.hold(share):  # the platforms' same steps one after the other: the first copies
        lowers = list(sv.snaps.lowerdirs(state.chains))
        for cand in shared.copies.get(share, ()):
            if cand.footprint.matches(lowers):
                chain = chain_id(state.chains[-1] if state.chains else None, cand.diff_id)
                sv.snaps.alias(chain, cand.chain)
                return LayerResult(cand.descriptor, cand.diff_id, chain)
        views: list = []
        res = _copy(sv, step, state, cancel, views.append)
        fp = views[0].footprint if views else None
        if res is not None and fp is not None and fp.complete:
            shared.copies.setdefault(share, []).append(Shared(fp, res.descriptor, res.diff_id, res.chain))
        return res


def _copy(sv: Services, step: Step, state: State, cancel=None, recording=None) -> LayerResult | None:
    """The copy itself; with `recording`, through a copyshare.RecordingFS handed to it."""
    op: CopyOp = step.op  # type: ignore[assignment]
    ensure_snapshots(sv, state)
    active = sv.snaps.prepare()
    work = Path(tempfile.mkdtemp(dir=sv.tmp, prefix="copy-"))
    try:
        if recording is not None:
            from builder.engine.copyshare import RecordingFS

            full = RecordingFS(active.upper, sv.snaps.lowerdirs(state.chains))
            recording(full)
        else:
            full = view_of(sv, state, active.upper)
        view = LayeredFS([active.upper]) if op.link else full
        owner = resolve_owner(op.chown, full)
        chmod = parse_chmod(op.chmod)
        items, several = _gather(sv, step, state, work)
        dest, trailing = _dest(op, state.config.config.working_dir)
        # Several sources into a destination without a trailing slash that is not a directory
        # are no error in BuildKit: each is copied to that path in turn (the last one stays).
        copier = Copier(active.upper, view, owner=owner, chmod=chmod, excludes=op.excludes,
                        follow_dest=not op.link, context=sv.context, cancel=cancel)
        copier.copy(items, dest, dest_is_dir=trailing)
    except BaseException:
        sv.snaps.discard(active)
        raise
    finally:
        fstree.rmtree(work, ignore_errors=True)
    return commit(sv, active, state)
