"""Bench: layer from 50,000 small files (tar + diff_id + zstd + digest + store write).

Target (issue 4): <= 40 us per file. Tree and store live on /dev/shm so the disk does not
dominate. Run: python bench/layers_small_files.py [--files N] [--reps R] [--compression C]
Prints min/median/max microseconds per file.
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
from builder.oci.store import DirStore  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--compression", default="zstd")
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pybuild-bench-layers-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        ctx = small_files_context(base / "ctx", a.files)
        entries = sum(1 for _ in ctx.rglob("*"))
        samples, cpu = [], []
        digests = set()
        for _ in range(a.reps):
            store_dir = base / "store"
            shutil.rmtree(store_dir, ignore_errors=True)
            t0, c0 = time.perf_counter(), time.process_time()
            info = write_layer(ctx, DirStore(store_dir), compression=a.compression)
            samples.append((time.perf_counter() - t0) / a.files * 1e6)
            cpu.append((time.process_time() - c0) / a.files * 1e6)
            digests.add(info.descriptor.digest)
        print(f"layer from {a.files} small files ({entries} entries, {a.compression}, "
              f"{info.uncompressed_size / 1e6:.1f} MB tar -> {info.descriptor.size / 1e6:.1f} MB)")
        print(f"us/file: min {min(samples):.1f}  median {statistics.median(samples):.1f}  max {max(samples):.1f}"
              f"   (target <= 40)   deterministic: {len(digests) == 1}")
        print(f"CPU us/file (all threads): median {statistics.median(cpu):.1f}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
