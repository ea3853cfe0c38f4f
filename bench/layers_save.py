"""Bench: export a 1 GB image as a docker-archive (layers uncompressed, as `docker save`
writes them) and as an OCI tar (blobs as stored), from a store on /dev/shm.

Run: python bench/layers_save.py [--mb 1024] [--reps 3]
Prints min/median/max MB/s of image content (uncompressed layer bytes for docker-archive,
stored bytes for OCI) and each run's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _vm_hwm_mb() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that over fork+exec from the
    parent, so a child would report the bench driver's memory as its own."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(root: str, fmt: str, out: str) -> None:
    from builder.oci.archive import save_docker_archive, save_oci
    from builder.oci.layout import ImageStore

    store = ImageStore(Path(root))
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        (save_docker_archive if fmt == "docker" else save_oci)(store, ["bench:1"], f)
    print(json.dumps({"s": time.perf_counter() - t0, "bytes": os.path.getsize(out),
                      "rss_mb": _vm_hwm_mb()}))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return 0
    from bench.scenarios.data import mixed_data
    from builder.layers.tarball import write_layer
    from builder.oci.config import History, ImageConfig
    from builder.oci.image import write_image
    from builder.oci.layout import ImageStore

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="pybuild-bench-save-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        src = mixed_data(base / "src", a.mb << 20)
        store = ImageStore(base / "root").ensure()
        info = write_layer(src, store.blobs)
        shutil.rmtree(src)
        cfg = ImageConfig("amd64", "linux").with_layer(info.diff_id, History(created_by="bench"))
        store.tag("bench:1", write_image(store.blobs, cfg, [info.descriptor]))
        for fmt in ("docker", "oci"):
            runs = []
            for _ in range(a.reps):
                out = base / "out.tar"
                r = subprocess.run([sys.executable, __file__, "--child", str(base / "root"), fmt, str(out)],
                                   check=True, capture_output=True, text=True)
                runs.append(json.loads(r.stdout))
                out.unlink()
            speeds = [r["bytes"] / r["s"] / 1e6 for r in runs]
            print(f"save {fmt:6} ({runs[0]['bytes'] / 1e6:.0f} MB archive): MB/s min {min(speeds):.0f} "
                  f"median {statistics.median(speeds):.0f} max {max(speeds):.0f}; peak RSS "
                  f"{max(r['rss_mb'] for r in runs):.0f} MB; load {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
