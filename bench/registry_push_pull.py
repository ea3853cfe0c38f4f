"""Bench: push and pull of a ~500 MB image to/from a local docker-registry, pybuild vs skopeo copy.

Target (issue 8): pybuild's throughput >= 0.8x `skopeo copy` on the same image, side by side.
Image: N zstd layers of random data (incompressible, and already compressed, so neither tool
recompresses) in a pybuild store, which is an OCI layout skopeo reads as `oci:STORE:big`.
Each rep uses a fresh registry (no "already exists" or mount shortcuts) and pulls into a fresh
store/dir; pybuild and skopeo alternate (A B, then B A) so noise and order hit both alike, and
each sample starts after `sync` (no dirty-page backlog from the previous one).
Both run as CLIs (`python -m builder.cli push|pull`, `skopeo copy`), start-up included.
Run: python bench/registry_push_pull.py [--mb 500] [--layers 5] [--reps 3]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def make_image(root: Path, mb: int, layers: int) -> str:
    from builder.oci import mediatypes as mt
    from builder.oci.config import ImageConfig
    from builder.oci.image import write_image
    from builder.oci.layout import ImageStore

    store = ImageStore(root).ensure()
    cfg = ImageConfig(architecture="amd64", os="linux")
    descs = []
    per = (mb << 20) // layers
    import zstandard

    for i in range(layers):
        # zstd layers: skopeo recompresses uncompressed layers for registries (gzip of random
        # data would dominate its time); already-compressed ones it copies as they are.
        with store.blobs.writer(mt.OCI_LAYER_ZSTD) as w:
            h = hashlib.sha256()
            z = zstandard.ZstdCompressor(level=1).compressobj()
            info = tarfile.TarInfo(f"data-{i}.bin")
            info.size = per
            pad = b"\0" * ((512 - per % 512) % 512) + b"\0" * 1024
            left = per
            pieces = [info.tobuf(format=tarfile.PAX_FORMAT)]
            while left or pieces:
                if left:
                    chunk = os.urandom(min(left, 4 << 20))
                    left -= len(chunk)
                    pieces.append(chunk)
                if not left:
                    pieces.append(pad)
                for piece in pieces:
                    h.update(piece)
                    w.write(z.compress(piece))
                pieces = []
                if not left:
                    break
            w.write(z.flush())
            descs.append(w.commit())
        cfg = cfg.with_layer("sha256:" + h.hexdigest())
    desc = write_image(store.blobs, cfg, descs)
    store.tag("big:1", desc)
    return desc.digest


def timed(cmd: list[str], env: dict) -> float:
    # Start each sample with no dirty-page backlog from the previous one (1 GB of registry
    # writes would otherwise stall whichever tool fsyncs next).
    os.sync()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True)
    dt = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr.decode()[-2000:]}")
    return dt


def stats(name: str, samples: list[float], mb: float) -> dict:
    s = sorted(samples)
    print(f"  {name:<16} min {s[0]:6.2f}s  median {statistics.median(s):6.2f}s  max {s[-1]:6.2f}s  "
          f"({mb / statistics.median(s):6.0f} MB/s at the median)")
    return {"min": s[0], "median": statistics.median(s), "max": s[-1], "samples": samples}


def main() -> int:
    from tests.fixtures.registry import start_registry

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    if not shutil.which("skopeo") or not shutil.which("docker-registry"):
        print("needs skopeo and docker-registry (apt-get install skopeo docker-registry)")
        return 2
    base = Path(tempfile.mkdtemp(prefix="pybuild-bench-registry-", dir=os.environ.get("BENCH_TMP", "/var/tmp")))
    results: dict = {}
    try:
        src = base / "src"
        t0 = time.perf_counter()
        digest = make_image(src, a.mb, a.layers)
        print(f"image {digest[:19]}: {a.mb} MB in {a.layers} layers (made in {time.perf_counter() - t0:.1f}s)")
        env = dict(os.environ, DOCKER_CONFIG=str(base / "docker-config"))
        push_py, push_sk, pull_py, pull_sk = [], [], [], []
        for rep in range(a.reps):
            # A fresh registry (new port) per rep: skopeo's blob-info cache remembers where blobs
            # live per registry and would otherwise mount instead of uploading.
            with start_registry(base / f"registry{rep}") as reg:
                py_ref, sk_ref = f"{reg.host}/bench/py:1", f"{reg.host}/bench/sk:1"
                dst_py, dst_sk = base / f"pull-py{rep}", base / f"pull-sk{rep}"
                ops = {
                    "push_py": lambda: timed([sys.executable, "-m", "builder.cli", "push", "-q", "big:1", py_ref],
                                             dict(env, PYBUILD_ROOT=str(src))),
                    "push_sk": lambda: timed(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                                              f"oci:{src}:big:1", f"docker://{sk_ref}"], env),
                    # each pulls what the other pushed: the same bytes
                    "pull_py": lambda: timed([sys.executable, "-m", "builder.cli", "pull", "-q", sk_ref],
                                             dict(env, PYBUILD_ROOT=str(dst_py))),
                    "pull_sk": lambda: timed(["skopeo", "copy", "-q", "--src-tls-verify=false",
                                              f"docker://{py_ref}", f"oci:{dst_sk}:big"], env),
                }
                order = ["push_py", "push_sk"] if rep % 2 == 0 else ["push_sk", "push_py"]
                order += ["pull_py", "pull_sk"] if rep % 2 == 0 else ["pull_sk", "pull_py"]
                got = {name: ops[name]() for name in order}  # A B, then B A: no order bias
                push_py.append(got["push_py"])
                push_sk.append(got["push_sk"])
                pull_py.append(got["pull_py"])
                pull_sk.append(got["pull_sk"])
                shutil.rmtree(dst_py, ignore_errors=True)
                shutil.rmtree(dst_sk, ignore_errors=True)
            shutil.rmtree(base / f"registry{rep}", ignore_errors=True)
        print(f"push/pull of {a.mb} MB, {a.reps} reps each, interleaved:")
        results["push_pybuild"] = stats("push pybuild", push_py, a.mb)
        results["push_skopeo"] = stats("push skopeo", push_sk, a.mb)
        results["pull_pybuild"] = stats("pull pybuild", pull_py, a.mb)
        results["pull_skopeo"] = stats("pull skopeo", pull_sk, a.mb)
        for op in ("push", "pull"):
            ratio = results[f"{op}_skopeo"]["median"] / results[f"{op}_pybuild"]["median"]
            results[f"{op}_ratio"] = ratio
            print(f"  {op}: pybuild throughput = {ratio:.2f}x skopeo's (target >= 0.8x)")
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
