"""A small streaming tar reader for applying layers: ustar, PAX (x and g), GNU long names.

Owns: turning a stream of tar bytes into `Entry` values plus their data, one pass, no
seeking. It exists because `tarfile` spends ~25 µs per member on generality layers never
need; this reader spends a few. Must not: touch the filesystem (unpack.py does) or accept
what it cannot represent faithfully (GNU sparse files, multi-volume archives): LayerError.
"""
from __future__ import annotations

import os
from typing import BinaryIO, Iterator

from builder.errors import LayerError
from runtime.record import Record, field

BLOCK = 512
REG, LNK, SYM, CHR, BLK, DIR, FIFO = b"0", b"1", b"2", b"3", b"4", b"5", b"6"
_REGULAR = {b"0", b"\0", b"7"}


class Entry(Record, frozen=False):
    name: str
    type: bytes
    size: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime: float = 0.0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    def isreg(self) -> bool:
        return self.type in _REGULAR

    def isdir(self) -> bool:
        return self.type == DIR


def _num(field_: bytes, what: str, name: str) -> int:
    if field_ and field_[0] & 0x80:  # GNU base-256 for values octal cannot hold
        n = int.from_bytes(field_[1:], "big")
        if field_[0] & 0x40:
            n -= 1 << (8 * len(field_) - 2)  # negative (two's complement of the 62-bit field)
        return n
    s = field_.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(s, 8) if s else 0
    except ValueError:
        raise LayerError(f"layer entry {name!r}: bad {what} field {field_!r}") from None


def _str(b: bytes) -> str:
    return os.fsdecode(b.split(b"\0", 1)[0])


def _pax(data: bytes, name: str) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    i = 0
    while i < len(data):
        sp = data.find(b" ", i)
        if sp < 0:
            break
        try:
            n = int(data[i:sp])
        except ValueError:
            raise LayerError(f"layer entry after {name!r}: malformed PAX header") from None
        if n <= 0 or i + n > len(data):
            raise LayerError(f"layer entry after {name!r}: malformed PAX header")
        rec = data[sp + 1:i + n - 1]  # drop the trailing newline
        k, _, v = rec.partition(b"=")
        out[k] = v
        i += n
    return out


class TarReader:
    """Iterate entries of `stream`; read each regular file's data with `data()` before moving on."""

    def __init__(self, stream: BinaryIO) -> None:
        self._f = stream
        self._left = 0   # unread data bytes of the current entry
        self._pad = 0
        self._global: dict[bytes, bytes] = {}
        self._last = "<start>"

    def _read(self, n: int) -> bytes:
        buf = self._f.read(n)
        if len(buf) == n:
            return buf
        parts = [buf]
        got = len(buf)
        while got < n:
            b = self._f.read(n - got)
            if not b:
                raise LayerError(f"layer archive is truncated (after entry {self._last!r})")
            parts.append(b)
            got += len(b)
        return b"".join(parts)

    def _skip_rest(self) -> None:
        n = self._left + self._pad
        while n:
            n -= len(self._read(min(n, 1 << 20)))
        self._left = self._pad = 0

    def data(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        while self._left:
            b = self._read(min(chunk, self._left))
            self._left -= len(b)
            yield b

    def __iter__(self) -> Iterator[Entry]:
        long_name: str | None = None
        long_link: str | None = None
        pax: dict[bytes, bytes] = {}
        while True:
            self._skip_rest()
            hdr = self._f.read(BLOCK)
            if len(hdr) < BLOCK:
                if not hdr:
                    return  # no end-of-archive blocks: accepted, as GNU tar does
                hdr += self._read(BLOCK - len(hdr))
            if hdr == bytes(BLOCK):
                return  # end of archive (the caller drains the rest for the diff_id)
            chk = _num(hdr[148:156], "checksum", self._last)
            if chk != sum(hdr[:148]) + 256 + sum(hdr[156:]) and chk != _signed_sum(hdr):
                raise LayerError(f"layer archive is corrupt: bad header checksum after entry {self._last!r}")
            typ = hdr[156:157]
            name = hdr[0:100].split(b"\0", 1)[0]
            if hdr[257:262] == b"ustar" and hdr[345] and hdr[257:265] != b"ustar  \0":
                name = hdr[345:500].split(b"\0", 1)[0] + b"/" + name
            size = _num(hdr[124:136], "size", self._last)
            if typ in (b"x", b"g", b"L", b"K"):
                body = self._read(size)
                self._read(-size % BLOCK)
                if typ == b"x":
                    pax.update(_pax(body, self._last))
                elif typ == b"g":
                    self._global.update(_pax(body, self._last))
                elif typ == b"L":
                    long_name = os.fsdecode(body.split(b"\0", 1)[0])
                else:
                    long_link = os.fsdecode(body.split(b"\0", 1)[0])
                continue
            attrs = {**self._global, **pax} if self._global else pax
            e = Entry(
                name=long_name if long_name is not None else os.fsdecode(name),
                type=typ,
                size=size,
                mode=_num(hdr[100:108], "mode", self._last) & 0o7777,
                uid=_num(hdr[108:116], "uid", self._last),
                gid=_num(hdr[116:124], "gid", self._last),
                mtime=float(_num(hdr[136:148], "mtime", self._last)),
                linkname=long_link if long_link is not None else _str(hdr[157:257]),
                devmajor=_num(hdr[329:337], "devmajor", self._last) if typ in (CHR, BLK) else 0,
                devminor=_num(hdr[337:345], "devminor", self._last) if typ in (CHR, BLK) else 0,
            )
            if attrs:
                _apply_pax(e, attrs)
            long_name = long_link = None
            pax = {}
            if typ == b"\0" and e.name.endswith("/"):
                e.type = DIR  # old V7 archives mark directories by a trailing slash only
            if typ in (b"S", b"V", b"M") or any(k.startswith(b"GNU.sparse.") for k in attrs):
                raise LayerError(f"layer entry {e.name!r}: GNU sparse / multi-volume entries are not supported")
            self._last = e.name
            # As tarfile does: regular files and unknown types carry data; links, devices,
            # directories and fifos do not, whatever their size field says.
            self._left = e.size if e.isreg() or typ not in (LNK, SYM, CHR, BLK, DIR, FIFO) else 0
            self._pad = -self._left % BLOCK
            yield e


def _signed_sum(hdr: bytes) -> int:
    # Some old tars computed the checksum over signed chars.
    return sum(b - 256 if b > 127 else b for b in hdr[:148]) + 256 + sum(
        b - 256 if b > 127 else b for b in hdr[156:])


def _apply_pax(e: Entry, attrs: dict[bytes, bytes]) -> None:
    for k, v in attrs.items():
        try:
            if k == b"path":
                e.name = os.fsdecode(v)
            elif k == b"linkpath":
                e.linkname = os.fsdecode(v)
            elif k == b"size":
                e.size = int(v)
            elif k == b"uid":
                e.uid = int(v)
            elif k == b"gid":
                e.gid = int(v)
            elif k == b"mtime":
                e.mtime = float(v)
            elif k.startswith(b"SCHILY.xattr."):
                e.xattrs[os.fsdecode(k[len(b"SCHILY.xattr."):])] = v
        except ValueError:
            raise LayerError(f"layer entry {e.name!r}: bad PAX value for {k.decode(errors='replace')}") from None
