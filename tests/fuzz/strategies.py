"""Hypothesis strategies for hostile inputs: Dockerfiles (grammar-aware and raw) and tar streams.

Owns: `dockerfiles()` (instructions, flags, quoting, JSON forms, heredocs, line continuations,
escape/syntax directives, variable expansions with every modifier, stage references, built from
pieces that mean something to the parser, then optionally mangled), `raw_dockerfiles()` (random
text and decoded random bytes), `tar_streams()` (entry lists aimed at escaping a root: `..`,
absolute names, symlink chains, hardlinks to links, whiteouts of odd names, devices, fifos, long
PAX names; serialised with tarfile, then optionally truncated, bit-flipped or compressed).
Also the property checks both the short suite run and bench/fuzz_long.py use: `check_dockerfile`
and `check_unpack` / `check_add_extract` (each raises AssertionError on a violated property).
Must not: write outside the directories handed in.
"""
from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

from hypothesis import strategies as st

from builder.errors import PybuildError

# ---------------------------------------------------------------- Dockerfiles (grammar-aware)
KEYWORDS = ["FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
            "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "from", "Run",
            "FRM", "ONBUILD ONBUILD", "ONBUILD FROM", "HEALTHCHECK NONE", "HEALTHCHECK CMD"]
FLAGS = ["--from=0", "--from=base", "--from=busybox", "--chown=1:1", "--chown=app", "--chmod=755", "--chmod=u+x",
         "--chmod=999", "--link", "--parents", "--exclude=*.md", "--mount=type=cache,target=/c",
         "--mount=type=bind,source=.,target=/s", "--mount=type=secret,id=x", "--mount=type=tmpfs,target=/t",
         "--mount=type=ssh", "--mount=type=bogus", "--mount=", "--network=none", "--network=host",
         "--security=insecure", "--platform=$BUILDPLATFORM", "--platform=linux/arm64", "--interval=5s",
         "--timeout=1m30s", "--retries=3", "--start-period=", "--checksum=sha256:00", "--keep-git-dir=true",
         "--", "--=", "--flag-without-value", "-x"]
WORDS = ["busybox", "scratch", "alpine:3.19", "a@sha256:" + "0" * 64, "base", "AS", "as", "build", "/", ".", "..",
         "../x", "/etc/passwd", "src/", "*.txt", "[abc]?", "a b", "'single'", '"double"', "'", '"', "\\", "\\\\",
         "$X", "${X}", "${X:-d}", "${X:+a}", "${X-}", "${X?err}", "${X#p}", "${X%%s}", "${X/a/b}", "${", "$", "${}",
         "$(id)", "`id`", "&&", "||", ";", "|", ">", "<<EOF", "<<-EOF", "<<'EOF'", "<<\"EOF\"", "<<", "=", "a=b",
         "a=", "=b", "k=\"v w\"", "80/tcp", "99999", "-1", "SIGKILL", "9", "0", "nobody:nogroup", "1000",
         "\u00e9\u00e8", "\u65e5\u672c", "\x00", "\t", "\x0b", "\r", "#", "# comment"]
JSON_FORMS = ['["sh", "-c", "true"]', '["a"]', '[]', '[""]', '["unterminated', '[1, 2]', '["\\u0000"]',
              '{"a": 1}', '["a",]', '[ "x" ]']
DIRECTIVES = ["# syntax=docker/dockerfile:1", "# escape=`", "# escape=\\", "# escape=x", "# check=skip=all",
              "# check=error=true", "#syntax=", "# directive=unknown"]


@st.composite
def _instruction(draw) -> str:
    kw = draw(st.sampled_from(KEYWORDS))
    parts = [kw]
    parts += draw(st.lists(st.sampled_from(FLAGS), max_size=2))
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(JSON_FORMS)))
    else:
        parts += draw(st.lists(st.sampled_from(WORDS), max_size=5))
    sep = draw(st.sampled_from([" ", " ", "  ", "\t", " \\\n  ", "`\n", " \\\n# c\n "]))
    line = sep.join(parts)
    if "<<" in line and draw(st.booleans()):  # a heredoc body, terminated or not
        body = draw(st.lists(st.sampled_from(["echo hi", "EOF", "  EOF", "\tEOF", "$X", "END"]), max_size=3))
        line += "\n" + "\n".join(body) + ("\nEOF" if draw(st.booleans()) else "")
    return line


@st.composite
def dockerfiles(draw) -> str:
    lines = draw(st.lists(st.sampled_from(DIRECTIVES), max_size=2))
    if draw(st.integers(0, 9)):  # usually well-formed enough to reach the planner
        lines.append(draw(st.sampled_from(["FROM busybox", "FROM scratch AS base", "ARG B=busybox\nFROM $B",
                                           "FROM busybox AS build", "FROM --platform=$BUILDPLATFORM busybox"])))
    lines += draw(st.lists(_instruction(), max_size=8))
    text = draw(st.sampled_from(["\n", "\r\n", "\n\n"])).join(lines)
    if draw(st.integers(0, 4)) == 0:  # mangle: cut, or splice random characters in
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.text(max_size=8)) + (text[i:] if draw(st.booleans()) else "")
    return text


def raw_dockerfiles() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=300),
                     st.binary(max_size=300).map(lambda b: b.decode("utf-8", errors="replace")),
                     st.binary(max_size=300).map(lambda b: b.decode("latin-1")))


def check_dockerfile(text: str) -> None:
    """Parse, lint and plan: either a result or a PybuildError with a renderable message."""
    from builder.dockerfile import parse_dockerfile
    from builder.dockerfile.lint import lint
    from builder.plan.planner import plan

    try:
        df = parse_dockerfile(text, "Dockerfile")
        lint(df)
        for target in (None, "base"):
            try:
                plan(df, build_args={"X": "1"}, target=target)
            except PybuildError as e:
                _renders(e)
    except PybuildError as e:
        _renders(e)


def _renders(e: PybuildError) -> None:
    out = e.render()
    assert isinstance(out, str) and out.strip(), f"empty message from {type(e).__name__}"
    first = out.splitlines()[0]
    assert "error" in first, f"first line has no 'error': {first!r}"


# ---------------------------------------------------------------- tar streams
SEGMENTS = ["a", "b", "..", ".", "", "etc", ".wh.a", ".wh..wh..opq", ".wh...", ".wh.", "lnk", "x" * 120, "\u00fc",
            "dev", "proc"]
TYPES = [tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
         tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, b"7", b"x", b"Z"]


def _path() -> st.SearchStrategy[str]:
    return st.builds(lambda lead, segs: lead + "/".join(segs), st.sampled_from(["", "", "/", "./", "../"]),
                     st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4))


_entry = st.tuples(_path(), st.sampled_from(TYPES), st.one_of(_path(), st.sampled_from(["/", "..", "/etc/passwd", "{OUT}"])),
                   st.binary(max_size=64), st.sampled_from([0o644, 0o755, 0o4755, 0o7777, 0o000]),
                   st.sampled_from([0, 0, 1000, 65534, 2**21 - 1]))


@st.composite
def tar_streams(draw) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=draw(st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]))) as tf:
        for name, typ, link, data, mode, uid in draw(st.lists(_entry, max_size=8)):
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mode, ti.uid, ti.gid, ti.mtime = typ, link, mode, uid, uid, 1_700_000_000
            ti.devmajor, ti.devminor = 1, 3
            ti.size = len(data) if typ in (tarfile.REGTYPE, b"7", b"x", b"Z") else 0
            try:
                tf.addfile(ti, io.BytesIO(data) if ti.size else None)
            except (ValueError, tarfile.TarError, UnicodeError):
                pass  # tarfile refuses to even write this header: skip it
    data = buf.getvalue()
    how = draw(st.integers(0, 5))
    if how == 1 and data:  # truncated
        data = data[:draw(st.integers(0, len(data)))]
    elif how == 2 and data:  # bit flips
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        data = bytes(b)
    elif how == 3:
        data = gzip.compress(data, mtime=0)
    elif how == 4:
        data = draw(st.binary(max_size=1200))  # not a tar at all
    return data


def _listing(d: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st_ = os.lstat(p)
            out[p] = (st_.st_mode, st_.st_size, st_.st_mtime_ns, st_.st_ino)
    return out


class Arena:
    """A work dir with `root/` (the target) beside `outside/` (a canary tree that must not change)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.outside = base / "outside"
        (self.outside / "etc").mkdir(parents=True, exist_ok=True)
        (self.outside / "etc" / "passwd").write_text("canary\n")
        self.before = _listing(self.outside)
        self.base_entries = {"outside"}

    def fresh_root(self) -> Path:
        import shutil

        root = self.base / "root"
        if root.exists():
            for dirpath, dirs, _ in os.walk(root):  # a fuzzed mode 000 dir must not stop the cleanup
                for d in dirs:
                    os.chmod(os.path.join(dirpath, d), 0o755, follow_symlinks=False) if not os.path.islink(
                        os.path.join(dirpath, d)) else None
            shutil.rmtree(root)
        return root

    def check(self) -> None:
        assert _listing(self.outside) == self.before, "a write landed outside the root"
        extra = set(os.listdir(self.base)) - self.base_entries - {"root", "tar"}
        assert not extra, f"entries appeared beside the root: {extra}"


def _outside_link(data: bytes, arena: Arena) -> bytes:
    return data.replace(b"{OUT}", str(arena.outside / "etc").encode()) if b"{OUT}" in data else data


def check_unpack(data: bytes, arena: Arena, whiteouts: str = "delete") -> None:
    """apply_layer: a diff_id or a LayerError/PybuildError; never another exception or an escape."""
    from builder.layers.unpack import apply_layer

    data = _outside_link(data, arena)
    root = arena.fresh_root()
    try:
        apply_layer(io.BytesIO(data), root, whiteouts=whiteouts, devices="skip")
    except PybuildError as e:
        _renders(e)
    arena.check()


def check_add_extract(data: bytes, arena: Arena) -> None:
    """ADD's local-archive extractor: a BuildStepError or files inside the dest; never an escape."""
    from builder.engine.transfer import _extract

    data = _outside_link(data, arena)
    tar = arena.base / "tar"
    tar.write_bytes(data)
    root = arena.fresh_root()
    try:
        _extract(str(tar), root)
    except PybuildError as e:
        _renders(e)
    arena.check()


# ---------------------------------------------------------------- image archives for `load`
_ARCHIVES: dict[str, bytes] = {}


def _seed_archives() -> dict[str, bytes]:
    """A small valid docker-archive and OCI tar (made once), the seeds mutations start from."""
    if not _ARCHIVES:
        import tempfile

        from builder.oci.archive import save_docker_archive, save_oci
        from builder.oci.layout import ImageStore
        from tests.fixtures.images import make_image

        root = Path(tempfile.mkdtemp(prefix="pybuild-fuzz-seed-"))
        make_image(root, "seed:1", [{"a.txt": b"hello", "etc/x": b"y" * 700}, {"b": b"z"}])
        store = ImageStore(root)
        buf = io.BytesIO()
        save_docker_archive(store, ["seed:1"], buf)
        _ARCHIVES["docker"] = buf.getvalue()
        buf = io.BytesIO()
        save_oci(store, ["seed:1"], buf)
        _ARCHIVES["oci"] = buf.getvalue()
    return _ARCHIVES


@st.composite
def image_archives(draw) -> bytes:
    data = bytearray(_seed_archives()[draw(st.sampled_from(["docker", "oci"]))])
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.integers(0, 3))
        if how == 0:  # truncate
            del data[draw(st.integers(0, len(data))):]
        elif how == 1 and data:  # flip bits
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == 2 and data:  # overwrite a run with random bytes (headers, JSON)
            i = draw(st.integers(0, len(data) - 1))
            chunk = draw(st.binary(min_size=1, max_size=32))
            data[i:i + len(chunk)] = chunk
        elif how == 3:
            data = bytearray(gzip.compress(bytes(data), mtime=0))
    return bytes(data)


def check_load(data: bytes, arena: Arena) -> None:
    """load_archive: images, or a PybuildError; never another exception, never an escape, and a
    store that still verifies (nothing half-written left under a digest)."""
    import shutil

    from builder.oci.archive import load_archive
    from builder.oci.gc import verify_store
    from builder.oci.layout import ImageStore

    f = arena.base / "tar"
    f.write_bytes(data)
    root = arena.fresh_root()
    store = ImageStore(root)
    try:
        load_archive(store, f)
    except PybuildError as e:
        _renders(e)
    _, problems = verify_store(store)
    assert not problems, problems
    arena.check()
    shutil.rmtree(root, ignore_errors=True)
