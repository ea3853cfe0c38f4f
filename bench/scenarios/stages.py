"""Scenario 6: four independent stages vs the same four stages one after another.

Owns: two Dockerfiles with the same four RUN steps (each sleeps, then writes a little): in
`parallel.Dockerfile` the stages are independent and a final stage copies from all four; in
`serial.Dockerfile` each stage starts FROM the previous one, so no builder can overlap them.
Every sample is a cold build (`--no-cache`). A builder that runs independent stages
concurrently shows parallel/serial well below 1. buildah gets `--jobs 4` (it builds stages one
by one by default). Must not: use CPU-bound steps (2 cores would blur overlap with contention).
"""
from __future__ import annotations

from bench.harness import ScenarioResult, Variant, run_interleaved
from bench.scenarios import Env

TITLE = "four independent stages vs the same stages one after another (cold builds)"


def parallel_dockerfile(sleep: float) -> str:
    out = []
    for i in range(1, 5):
        out += [f"FROM busybox:bench AS s{i}",
                f"RUN sleep {sleep} && echo {i} > /out{i} && head -c 1048576 /dev/zero > /pad{i}", ""]
    out.append("FROM busybox:bench")
    out += [f"COPY --from=s{i} /out{i} /out{i}" for i in range(1, 5)]
    out.append("RUN cat /out1 /out2 /out3 /out4 > /dev/null")
    return "\n".join(out) + "\n"


def serial_dockerfile(sleep: float) -> str:
    out = []
    prev = "busybox:bench"
    for i in range(1, 5):
        out += [f"FROM {prev} AS s{i}",
                f"RUN sleep {sleep} && echo {i} > /out{i} && head -c 1048576 /dev/zero > /pad{i}", ""]
        prev = f"s{i}"
    out.append("FROM s4")
    out.append("RUN cat /out1 /out2 /out3 /out4 > /dev/null")
    return "\n".join(out) + "\n"


def run(env: Env, key: str) -> ScenarioResult:
    res = ScenarioResult(key, TITLE)
    sleep = 0 if env.mode == "smoke" else 1
    ctx = env.fresh_dir("ctx-stages")
    par = ctx / "parallel.Dockerfile"
    ser = ctx / "serial.Dockerfile"
    par.write_text(parallel_dockerfile(sleep))
    ser.write_text(serial_dockerfile(sleep))
    variants = []
    for b in env.builders():
        for label, df, parallel in (("4 independent", par, True), ("4 chained", ser, False)):
            variants.append(Variant(
                f"{b.name} {label}", setup=b.before_cold,
                run=lambda b=b, df=df, p=parallel: b.build(ctx, f"bench-stages-{'par' if p else 'ser'}",
                                                           no_cache=True, dockerfile=df, parallel=p)))
    res.rows += run_interleaved(variants, env.reps(3, 2), warmup=env.warmup)
    for b in env.builders():
        res.add_ratio(f"{b.name} 4 independent", f"{b.name} 4 chained")
    for peer in env.peers:
        res.add_ratio("pybuild 4 independent", f"{peer.name} 4 independent")
    res.notes.append(f"each stage: RUN sleep {sleep} + write 1 MiB; ideal parallel/serial ≈ 0.25 "
                     "plus fixed costs; buildah gets --jobs 4")
    return res
