"""Where a build's Dockerfile and context come from, as `docker build` reads them: a directory,
a tarball (plain, gzip, zstd, bzip2, xz), or stdin (`-`: a tar by its content, or else the
Dockerfile itself with an empty context), with `-f FILE|-`; a plain file as the context is an
error with a hint.

Must not: build anything (commands/build.py does).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from builder.layers import fstree


def read_inputs(args, st):
    """(context dir, Dockerfile text, name, path, temp dir to remove or None)."""
    from builder.errors import ContextError, UsageError

    tmp_ctx: str | None = None
    ctx_arg = args.context
    try:
        stdin_dockerfile = None
        if ctx_arg == "-":
            if args.file == "-":
                raise UsageError("cannot read both the context and the Dockerfile from stdin")
            stream, head = _peek(sys.stdin.buffer)
            st.tmp_dir.mkdir(parents=True, exist_ok=True)
            tmp_ctx = tempfile.mkdtemp(dir=st.tmp_dir, prefix="ctx-")
            ctx_dir = Path(tmp_ctx)
            if _is_archive(head):
                _unpack_context(stream, head, ctx_dir)
            else:
                # docker's `build - < Dockerfile`: stdin is the Dockerfile, the context is empty
                if args.file:
                    raise UsageError("-f cannot be used when stdin is the Dockerfile (build -); "
                                     "send a tar of the context on stdin instead")
                try:
                    stdin_dockerfile = stream.read().decode("utf-8")
                except UnicodeDecodeError:
                    raise ContextError("stdin is neither a tar archive nor a UTF-8 Dockerfile") from None
        elif os.path.isfile(ctx_arg):
            with open(ctx_arg, "rb") as f:
                stream, head = _peek(f)
                if not _is_archive(head):
                    raise ContextError(
                        f"build context {ctx_arg!r} is a file, not a directory or an archive",
                        hint=f"pass the directory: `pybuild build -f {ctx_arg} DIR`, "
                             f"or build without context: `pybuild build - < {ctx_arg}`")
                st.tmp_dir.mkdir(parents=True, exist_ok=True)
                tmp_ctx = tempfile.mkdtemp(dir=st.tmp_dir, prefix="ctx-")
                _unpack_context(stream, head, Path(tmp_ctx))
            ctx_dir = Path(tmp_ctx)
        elif os.path.isdir(ctx_arg):
            ctx_dir = Path(ctx_arg).resolve()
        else:
            raise ContextError(f"build context {ctx_arg!r} does not exist")

        if stdin_dockerfile is not None:
            text, name, df_path = stdin_dockerfile, "Dockerfile", None
        elif args.file == "-":
            text, name, df_path = sys.stdin.read(), "Dockerfile", None
        else:
            df_path = Path(args.file) if args.file else ctx_dir / "Dockerfile"
            if args.file and not df_path.is_absolute() and not df_path.exists() and (ctx_dir / args.file).exists():
                df_path = ctx_dir / args.file
            try:
                text = df_path.read_text()
            except FileNotFoundError:
                raise ContextError(f"Dockerfile not found: {df_path}") from None
            except UnicodeDecodeError:
                raise ContextError(f"{df_path} is not UTF-8 text") from None
            name = df_path.name
    except BaseException:
        if tmp_ctx:
            fstree.rmtree(tmp_ctx, ignore_errors=True)
        raise
    return ctx_dir, text, name, df_path, tmp_ctx


class _Prefixed:
    """A stream whose first bytes were already read (to look at them): those, then the rest."""

    def __init__(self, head: bytes, rest) -> None:
        self._head, self._rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._rest.read(n)

    def readable(self) -> bool:
        return True


def _peek(f, n: int = 512) -> tuple[_Prefixed, bytes]:
    head = b""
    while len(head) < n:
        chunk = f.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return _Prefixed(head, f), head


def _is_archive(head: bytes) -> bool:
    """A (compressed) tar by its first bytes, as docker tells a context tar from a Dockerfile."""
    if head.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"BZh", b"\xfd7zXZ\x00")):
        return True
    if len(head) < 512:
        return False
    if head == bytes(512):
        return True  # an empty tar (end-of-archive block)
    import tarfile

    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")  # header checksum holds
    except tarfile.HeaderError:
        return False
    return True


def _unpack_context(stream, head: bytes, dest: Path) -> None:
    from builder.context import unpack_context_tar

    if head.startswith(b"\x28\xb5\x2f\xfd"):  # zstd: tarfile's "r|*" knows gzip/bz2/xz only
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
    unpack_context_tar(stream, dest)
