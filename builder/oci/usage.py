"""Unpacked sizes of layers and images: what docker shows as an image's SIZE.

Owns: the content size of a layer (the sum of the sizes of the regular files its tar holds, as
docker's layer DiffSize counts them; hardlinks, directories, links and whiteouts add nothing),
read once per diff_id by streaming the layer's tar headers, and kept in a small JSON file
(`layer-sizes.json` in the state directory) keyed by diff_id: a diff_id names its content, so an
entry is never stale. Must not: unpack files or change blobs. Writes are atomic (temp + rename);
losing a race to write the file only costs a recount.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from builder.errors import PybuildError


class LayerSizes:
    """diff_id → unpacked size, remembered in `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sizes: dict[str, int] | None = None
        self._dirty = False

    def _load(self) -> dict[str, int]:
        if self._sizes is None:
            try:
                data = json.loads(self.path.read_text())
                self._sizes = {k: int(v) for k, v in data.items()} if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._sizes = {}
        return self._sizes

    def layer(self, blobs, layer_desc, diff_id) -> int:
        sizes = self._load()
        key = str(diff_id)
        if key in sizes:
            return sizes[key]
        try:
            n = count_layer(blobs, layer_desc)
        except PybuildError:
            return layer_desc.size  # blob absent or unreadable: its stored size, not remembered
        sizes[key] = n
        self._dirty = True
        return n

    def image(self, blobs, img) -> int:
        """The unpacked size of an image: its layers' sizes summed."""
        return sum(self.layer(blobs, d, did) for d, did in zip(img.layers, img.diff_ids))

    def save(self) -> None:
        """Write new entries (best effort: a read-only state directory just recounts next time)."""
        if not self._dirty or self._sizes is None:
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".layer-sizes.")
            with os.fdopen(fd, "w") as f:
                json.dump(self._sizes, f, sort_keys=True, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            try:
                os.unlink(tmp)
            except (OSError, UnboundLocalError):
                pass
        self._dirty = False


def count_layer(blobs, layer_desc) -> int:
    """Sum of regular-file sizes in one layer blob (decompressed as its media type says)."""
    import tarfile  # only when a layer is counted for the first time

    from builder.oci.compression import open_decompressed

    total = 0
    try:
        with blobs.open(layer_desc.digest) as raw:
            stream = open_decompressed(raw, layer_desc.media_type)
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for m in tar:
                    if m.isreg() and not os.path.basename(m.name).startswith(".wh."):
                        total += m.size
    except (tarfile.TarError, OSError, EOFError) as e:
        raise PybuildError(f"cannot read layer {layer_desc.digest}: {e}") from None
    return total
