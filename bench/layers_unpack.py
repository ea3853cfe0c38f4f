"""Bench: apply a layer of 50,000 small files (zstd) to an empty directory.

No target in issue 4; this is the cost the engine pays to unpack a base image on a cold
build. Tree, store and destination on /dev/shm. Run: python bench/layers_unpack.py [--files N]
Prints min/median/max microseconds per file (wall) and the CPU time per file.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scenarios.data import small_files_context  # noqa: E402
from builder.layers.tarball import write_layer  # noqa: E402
from builder.layers.unpack import apply_layer  # noqa: E402
from builder.oci.store import DirStore  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pybuild-bench-unpack-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        ctx = small_files_context(base / "ctx", a.files)
        store = DirStore(base / "store")
        info = write_layer(ctx, store)
        wall, cpu = [], []
        for i in range(a.reps):
            dest = base / f"out{i}"
            t0, c0 = time.perf_counter(), time.process_time()
            got = apply_layer(store.path(info.descriptor.digest), dest, media_type=info.descriptor.media_type)
            wall.append((time.perf_counter() - t0) / a.files * 1e6)
            cpu.append((time.process_time() - c0) / a.files * 1e6)
            assert got == info.diff_id
            shutil.rmtree(dest)
        print(f"apply_layer of {a.files} small files (zstd)")
        print(f"us/file: min {min(wall):.1f}  median {statistics.median(wall):.1f}  max {max(wall):.1f}; "
              f"CPU us/file median {statistics.median(cpu):.1f}; load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
