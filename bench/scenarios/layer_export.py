"""Scenario 3: layer export of 1 GB of mixed data, zstd and gzip, against the machine's floor.

Owns: the floor pipelines (`tar | tee >(sha256) | zstd -T0 -3 | tee blob | sha256`, the
same with gzip), pybuild's layer writer called in-process (`write_layer` into a DirStore), and
the end-to-end figure through the CLI (`pybuild build` of `COPY data/ /data/` with
PYBUILD_COMPRESSION=zstd|gzip). Docker's build of the same COPY is shown for context (it does
not compress at build time). Must not: keep blobs between samples (each sample writes afresh).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from bench.harness import NotAvailable, ScenarioResult, Variant, check, run_interleaved
from bench.scenarios import Env
from bench.scenarios.data import mixed_data, tree_bytes

TITLE = "layer export of 1 GB mixed data (zstd, gzip) vs tar|compress|sha256 floor"

# sha256 through openssl: it uses the CPU's SHA extensions; coreutils' sha256sum does not and
# alone needs ~3 s per GB here, which would make a "floor" slower than pybuild.
SHA = "openssl dgst -sha256" if shutil.which("openssl") else "sha256sum"
FLOOR = r"""set -eo pipefail
tar --sort=name --numeric-owner -C "$1" -cf - . | tee >({sha} > "$2.diffid") \
  | {comp} | tee "$2" | {sha} > "$2.digest"
wait $!
""".replace("{sha}", SHA)
# gzip floor: ISA-L's igzip at the level pybuild's writer uses (2) when Debian's isal is
# installed (bench/run --install-peers adds it), otherwise plain gzip -1
GZIP = "igzip -2 -c" if shutil.which("igzip") else "gzip -1 -c"
COMPRESSORS = {"zstd": "zstd -T0 -3 -q -c", "gzip": GZIP}


def _writer():
    """pybuild's single-pass layer writer as `f(src_dir, store_dir, compression)`: the real
    `builder.layers.tarball.write_layer` into a `builder.oci.store.DirStore` (temp → fsync →
    rename, both digests), or NotAvailable while it has not landed."""
    try:
        from builder.layers.tarball import write_layer
        from builder.oci.store import DirStore
    except ImportError as e:
        raise NotAvailable(f"not available yet: builder.layers.tarball.write_layer ({e})") from None

    def call(src: Path, store_dir: Path, compression: str) -> None:
        try:
            write_layer(src, DirStore(store_dir), compression=compression)
        except Exception as e:  # a writer bug shows as this row's note, not a crashed bench
            raise NotAvailable(f"write_layer failed: {type(e).__name__}: {e}") from None
    return call


def run(env: Env, key: str) -> ScenarioResult:
    total = env.size(1 << 30, 4 << 20)
    res = ScenarioResult(key, TITLE if total == 1 << 30 else TITLE.replace("1 GB", f"{total >> 20} MiB"))
    ctx = env.fresh_dir("ctx-export")
    data = mixed_data(ctx / "data", total)
    nbytes = tree_bytes(data)
    (ctx / "Dockerfile").write_text("FROM busybox:bench\nCOPY data/ /data/\n")
    out = env.state / "export-blob"
    store_dir = env.state / "export-store"

    def clean() -> None:
        for p in out.parent.glob(out.name + "*"):
            p.unlink()
        shutil.rmtree(store_dir, ignore_errors=True)
        store_dir.mkdir()

    def floor(comp: str):
        script = FLOOR.replace("{comp}", COMPRESSORS[comp])
        return lambda: check(["bash", "-c", script, "floor", str(data), str(out)], what="floor")

    def api(comp: str):
        def go() -> None:
            _writer()(data, store_dir, comp)
        return go

    def cli(comp: str):
        def go() -> None:
            env.pybuild.require("build", "build")
            env.pybuild.require_base()
            argv, _e = env.pybuild.build_argv(ctx, f"bench-export-{comp}", no_cache=True)
            env.pybuild.check(argv, "pybuild build", {"PYBUILD_COMPRESSION": comp})
        return go

    variants = []
    for comp in ("zstd", "gzip"):
        variants += [Variant(f"floor {comp}", setup=clean, run=floor(comp)),
                     Variant(f"pybuild writer {comp}", setup=clean, run=api(comp)),
                     Variant(f"pybuild build {comp}", setup=clean, run=cli(comp))]
    for peer in env.peers:
        variants.append(Variant(f"{peer.name} build (no compression)", setup=peer.before_cold,
                                run=lambda p=peer: p.build(ctx, "bench-export", no_cache=True)))
    res.rows += run_interleaved(variants, env.reps(3, 2), warmup=env.warmup)
    rows = []
    for r in res.rows:
        if r.stats:
            r = type(r)(r.name, r.stats, f"{nbytes / r.stats.median / 1e6:.0f} MB/s")
        rows.append(r)
    res.rows = rows
    for comp in ("zstd", "gzip"):
        res.add_ratio(f"pybuild writer {comp}", f"floor {comp}")
        res.add_ratio(f"pybuild build {comp}", f"floor {comp}")
    res.notes.append(f"input {nbytes / 1e6:.0f} MB in {sum(1 for _ in data.rglob('*'))} "
                     "entries; 1/3 random, 1/3 text-like, 1/3 zeros")
    res.notes.append(f"floor = tar --sort=name | tee >(sha256) | COMPRESSOR | tee blob | sha256, "
                     f"sha256 by `{SHA}`, gzip by `{GZIP}`; the blob goes to the same disk as "
                     "pybuild's store")
    res.notes.append("target (issue 4): 1 GB layer export >= 250 MB/s end to end")
    clean()
    shutil.rmtree(ctx, ignore_errors=True)
    return res
