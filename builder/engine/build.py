"""One build, start to end: Dockerfile + context + options → an image in the local store.

Owns: `BuildRequest` (everything `pybuild build` can say), `build(req, settings, reporter) ->
BuildResult`: open the stores, read the Dockerfile (cached parse: a no-op rebuild skips Lark),
set up the context with .dockerignore and the stat cache, resolve base images (local store,
`oci-layout://DIR[:tag|@digest]`, or a registry pull), plan, solve, write config + manifest,
tag; import/export the local cache. `explain(req, settings)` computes keys without building.

Must not: print (events go to the reporter), exit, or write outputs other than the local store
(commands/build.py handles -o, --iidfile, --metadata-file).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from builder.context import BuildContext, StatCache, read_ignore_patterns, stat_cache_path
from builder.engine.cache import CacheStore
from builder.engine.ops import Secret, Services, State
from builder.engine.solver import Solution, SolveOptions, Solver, rfc3339
from builder.errors import BuildStepError, ImageNotFound, PybuildError, UsageError
from builder.oci.image import Image, chain_ids, write_image
from builder.oci.layout import ImageStore
from builder.oci.model import Descriptor
from builder.plan import cachekey as ck
from builder.plan.graph import BuildGraph
from builder.report import BuildFinished, BuildStarted, NullReporter, Reporter, StepProgress
from builder.settings import Settings
from builder.snapshot import Snapshotter
from runtime.record import Record, field

class BuildRequest(Record, frozen=False):
    context_dir: Path | None  # None: no context (Dockerfile on stdin and context "-" as a Dockerfile)
    dockerfile_text: str
    dockerfile_name: str = "Dockerfile"
    dockerfile_path: Path | None = None  # for NAME.dockerignore beside it
    tags: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    no_cache_filter: tuple[str, ...] = ()
    pull: bool = False
    platform: str = "linux/amd64"
    labels: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    ssh: dict[str, str] = field(default_factory=dict)
    network: str = "default"
    cache_from: tuple[Path, ...] = ()
    cache_to: Path | None = None
    inline_cache: bool = False  # --cache-to type=inline: records of the image's layers in its config
    source_date_epoch: int | None = None
    max_workers: int = 4
    pids_limit: int | None = None  # per RUN; None: ops.DEFAULT_RUN_PIDS_LIMIT, -1: none
    memory_bytes: int | None = None  # per RUN (--memory); None: no limit
    allow: tuple[str, ...] = ()  # entitlements granted with --allow (security.insecure)
    memo_fields: dict | None = None  # the request as the no-op memo fingerprints it (None: no memo)
    shared: object | None = None  # multiplatform.KeyLocks when several platform builds run at once


class BuildResult(Record):
    manifest: Descriptor
    config_digest: str
    image: Image
    solution: Solution
    graph: BuildGraph
    seconds: float


class Bases:
    """Base images by reference, resolved once per build (thread-safe): local, oci-layout, pull."""

    def __init__(self, store: ImageStore, *, pull: bool, platform: str, reporter: Reporter,
                 settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings
        self.pull = pull
        self.platform = platform
        self.rep = reporter
        self.states: dict[str, State] = {}
        self.digests: dict[str, str] = {}  # ref -> manifest digest (for the no-op memo)
        self.named: dict[str, str] = {}  # ref -> the digest its local name resolved to (manifest or index)
        self.lock = threading.Lock()
        self.failed: dict[str, PybuildError] = {}  # bases that could not be had, while planning

    def _load(self, ref: str, platform: str) -> Image:
        if ref.startswith("oci-layout://"):
            return self._from_layout(ref[len("oci-layout://"):], platform)
        desc = None
        elsewhere = ""  # the local name exists, for other platforms only
        if not self.pull:
            try:
                desc = self.store.resolve(ref)
                from builder.engine.multiplatform import local_image

                img = local_image(self.store, ref, desc, platform)
                if img is not None:
                    self.named[ref] = str(desc.digest)  # what the name points at (an index, maybe): the memo checks it
                    return img
                desc = None  # a local name without this platform: pull it (pull keeps the index)
                elsewhere = f" for {platform}"
            except ImageNotFound:
                desc = None
        if desc is None:
            try:
                from builder.registry.transfer import Options, pull
            except ImportError:
                raise ImageNotFound(f"no image {ref!r} in the local store") from None
            self.rep.emit(StepProgress(0, f"pulling {ref}"))
            opts = Options(insecure_registries=self.settings.insecure_registries,
                           mirrors=dict(self.settings.mirrors)) if self.settings else None
            try:
                desc = pull(ref, self.store, platform=platform, options=opts)
            except PybuildError as e:
                if not self.pull:
                    raise ImageNotFound(f"no image {ref!r}{elsewhere} in the local store, and pulling it failed: "
                                        f"{e.message}", hint="pybuild images lists local images") from None
                raise
        return _load_for(self.store.blobs, desc, platform)

    def _from_layout(self, spec: str, platform: str) -> Image:
        path, ref = spec, None
        if "@" in spec:
            path, ref = spec.rsplit("@", 1)
        elif ":" in os.path.basename(spec):
            head, tail = spec.rsplit(":", 1)
            path, ref = head, tail
        theirs = ImageStore(Path(path), private=False)  # the user's layout: never chmod it
        if not (Path(path) / "index.json").is_file():
            raise ImageNotFound(f"oci-layout://{spec}: {path} is not an OCI layout")
        if ref is None:
            ms = theirs.index().manifests
            if len(ms) != 1:
                raise ImageNotFound(f"oci-layout://{spec}: the layout holds {len(ms)} images; name one with :tag or @digest")
            desc = ms[0]
        else:
            desc = theirs.resolve(ref)
        img = _load_for(theirs.blobs, desc, platform)
        from builder.oci.image import reachable

        for d in reachable(theirs.blobs, img.descriptor):
            if not self.store.blobs.has(d.digest):
                with theirs.blobs.open(d.digest) as f:
                    self.store.blobs.put(f, d.media_type, d.digest)
        return Image.load(self.store.blobs, img.descriptor)

    def state(self, ref: str, platform: str | None = None) -> State:
        from builder.engine.solver import base_ref

        plat = platform or self.platform
        name = base_ref(ref, plat, self.platform)
        with self.lock:
            st = self.states.get(name)
            if st is None:
                img = self._load(ref, plat)
                cfg = img.config
                st = State(cfg, tuple(img.layers), tuple(str(c) for c in chain_ids(cfg.diff_ids)),
                           ck.make_key("from", None, {"image": str(img.descriptor.digest),
                                                      "platform": plat}).key, cfg.created)
                self.states[name] = st
                self.digests[name] = self.named.get(ref, str(img.descriptor.digest)) if name == ref \
                    else str(img.descriptor.digest)
            return st

    def config(self, ref: str, platform: str | None = None):
        """A base's config for the planner. One that cannot be had is not an error yet: as in
        BuildKit, only the stages the target needs resolve their bases (check_needed)."""
        if ref.lower() == "scratch":
            return None
        try:
            return self.state(ref, platform).config
        except PybuildError as e:
            self.failed[ref] = e
            return None

    def check_needed(self, graph: BuildGraph) -> None:
        for i in graph.needed():
            op = graph.stages[i].steps[0].op
            ref = getattr(op, "image", None)
            if ref in self.failed:
                raise self.failed[ref]


def _load_for(blobs, desc: Descriptor, platform: str) -> Image:
    from builder.oci.model import Platform

    os_, _, rest = platform.partition("/")
    arch, _, variant = rest.partition("/")
    return Image.load(blobs, desc, Platform(arch, os_, variant=variant or None))


def _normalize_platform(spec: str) -> str:
    from builder import platforms

    try:
        return platforms.normalize(spec)
    except UsageError as e:
        raise ValueError(e.message) from None


def _parse(req: BuildRequest, settings: Settings):
    from builder.dockerfile import parse_dockerfile_cached

    return parse_dockerfile_cached(req.dockerfile_text, req.dockerfile_name, settings.cache_dir / "parse")


def _trigger_parser(text: str) -> tuple:
    from builder.dockerfile import parse_dockerfile

    df = parse_dockerfile(f"FROM scratch\n{text}\n", "<onbuild>")
    return tuple(df.instructions[1:])


def _setup(req: BuildRequest, settings: Settings, reporter: Reporter):
    from builder import platforms

    req.platform = platforms.normalize(req.platform)
    store = ImageStore(settings.store_dir).ensure()
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    df = getattr(req.shared, "dockerfile", None) or _parse(req, settings)
    stat_cache = None
    ctx = None
    if req.context_dir is not None and getattr(req.shared, "context", None) is not None:
        ctx = req.shared.context  # type: ignore[union-attr]  # one context hashed for every platform; its owner saves the stat cache
    elif req.context_dir is not None:
        stat_cache = StatCache.load(stat_cache_path(settings.cache_dir, req.context_dir))
        ign = BuildContext.ignore_file_for(req.context_dir, req.dockerfile_path)
        patterns = read_ignore_patterns(ign.read_text()) if ign else []
        ctx = BuildContext(req.context_dir, patterns, stat_cache)
    bases = Bases(store, pull=req.pull, platform=req.platform, reporter=reporter, settings=settings)
    from builder.plan.planner import plan

    # As BuildKit: only the bases of the stages the target needs are resolved (or pulled). Plan
    # once knowing no base, then again with the needed ones, until the needed set is stable (a
    # base's ONBUILD trigger or ENV can add a dependency on another stage).
    wanted: set[str] = set()
    while True:
        graph = plan(df, build_args=req.build_args, target=req.target, platform=req.platform,
                     base_config=lambda ref, plat=None: bases.config(ref, plat) if ref in wanted else None,
                     parse_trigger=_trigger_parser, build_platform=platforms.host(),
                     normalize_platform=_normalize_platform)
        refs = {getattr(graph.stages[i].steps[0].op, "image", None) for i in graph.needed()} - {None, "scratch"}
        if refs <= wanted:
            break
        wanted |= refs  # type: ignore[arg-type]
    bases.check_needed(graph)
    _check_entitlements(graph, req.allow)
    from builder.engine.multiplatform import check_emulation

    check_emulation(graph)  # before any work: a foreign RUN without a binfmt handler says what to do
    from builder.dockerfile.lint import enforce, lint
    from builder.report import Warning as W

    findings = lint(df, req.build_args)
    enforce(findings, df)  # `# check=error=true` makes findings fatal, as BuildKit does
    for f in findings:
        where = f"{f.span.file}:{f.span.line}: " if f.span else ""
        reporter.emit(W(f"{where}{f.rule}: {f.message}"))
    _check_limits(req, graph, None)  # an explicit --pids-limit or --memory that cannot be: before any work
    snaps = Snapshotter(settings.snapshots_dir, settings.tmp_dir)
    snaps.sweep()  # what a killed build (SIGKILL, power loss) left in tmp/
    from builder.engine.mounts import clear_secret_leftovers
    clear_secret_leftovers(settings.tmp_dir)  # at once, whatever their age: they are secrets
    sv = Services(blobs=store.blobs, snaps=snaps,
                  tmp=settings.tmp_dir, cache_mounts=settings.cache_dir / "mounts", context=ctx,
                  compression=settings.compression, source_date_epoch=req.source_date_epoch,
                  secrets=dict(req.secrets), ssh=dict(req.ssh), network=req.network, pids_limit=req.pids_limit,
                  memory_bytes=req.memory_bytes,
                  allow_insecure="security.insecure" in req.allow)
    cache = CacheStore(settings.cache_dir, settings.tmp_dir)
    for src in req.cache_from:
        n = cache.import_local(src, store.blobs)
        reporter.emit(StepProgress(0, f"imported {n} cache records from {src}"))
    # images read by COPY --from=IMAGE and RUN --mount=...,from=IMAGE: resolved (pulled) up front,
    # before the worker threads need them
    needed = [graph.stages[i] for i in graph.needed()]
    froms = [s.op.source_from for st in needed for s in st.steps if getattr(s.op, "source_from", None)]
    froms += [m.source_from for st in needed for s in st.steps for m in getattr(s.op, "mounts", ())
              if m.source_from is not None]
    for ref in sorted({f.image for f in froms if f.image}):
        bases.state(ref)  # COPY --from=image: resolve before the worker threads need it
    solver = Solver(graph, sv, cache, bases=bases.states, reporter=reporter,
                    options=SolveOptions(dockerfile=str(req.dockerfile_path or req.dockerfile_name),
                                         no_cache=req.no_cache,
                                         no_cache_filter=frozenset(x.lower() for x in req.no_cache_filter),
                                         max_workers=req.max_workers, shared=req.shared))
    if getattr(req.shared, "cancel", None) is not None:
        solver.cancel = req.shared.cancel  # type: ignore[union-attr]  # one platform failing stops the others
    return store, graph, solver, stat_cache, cache, bases


class _Steps:
    """Passes events on and remembers step names (the memo replays them)."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.steps: dict[int, str] = {}
        self.warnings: list[str] = []

    def emit(self, event) -> None:
        from builder.report import StepCached, StepStarted, Warning as W

        if isinstance(event, (StepCached, StepStarted)) and event.id:
            self.steps[event.id] = event.name
        elif isinstance(event, W):
            self.warnings.append(event.message)
        self.inner.emit(event)


def _write_memo(req: BuildRequest, settings: Settings, solver, bases: "Bases", desc: Descriptor, config_digest: str,
                steps: _Steps) -> None:
    from builder.engine import memo
    from builder.oci.layout import stored_name

    if (req.memo_fields is None or req.no_cache or req.no_cache_filter or req.pull or req.cache_from
            or req.cache_to or solver.sv.remote_inputs or any(r.startswith("oci-layout://") for r in bases.digests)):
        return
    ctx = solver.sv.context
    m = {"bases": {stored_name(r): d for r, d in bases.digests.items()},
         "tags": [stored_name(t) for t in req.tags],
         "manifest": desc.to_dict(), "config_digest": config_digest,
         "records": [[k.key.key, None] for k in solver.keys],
         "selects": dict(ctx.selects) if ctx else {}, "digests": dict(ctx.digested) if ctx else {},
         "steps": sorted([i, n] for i, n in steps.steps.items()), "warnings": steps.warnings}
    for rec in m["records"]:
        r = solver.cache.get(rec[0])
        if r is None:
            return
        rec[1] = r.layer["digest"] if r.layer else None
    memo.write(settings.cache_dir, settings.tmp_dir, memo.fingerprint(req.memo_fields), m)


def _check_entitlements(graph, allow: tuple[str, ...]) -> None:
    """RUN --security=insecure needs `--allow security.insecure`, as in BuildKit (whose
    solver says "security.insecure is not allowed"); checked before any step runs."""
    from builder.errors import InstructionError
    from builder.plan.graph import RunOp

    if "security.insecure" in allow:
        return
    for st in graph.stages:
        for s in st.steps:
            if isinstance(s.op, RunOp) and s.op.security == "insecure":
                raise InstructionError("security.insecure is not allowed (RUN --security=insecure needs "
                                       "`pybuild build --allow security.insecure`)", s.span)


def _check_limits(req: BuildRequest, graph: BuildGraph, reporter: Reporter | None) -> None:
    """Rootless without a delegated cgroup: an explicit --pids-limit or --memory is an error
    before any work; the default limit is left out with one warning (given a reporter, and only when
    the build has a RUN step), never a failed build."""
    from builder.engine.ops import DEFAULT_RUN_PIDS_LIMIT, pids_limit_unavailable
    from builder.plan.graph import RunOp
    from builder.report import Warning as W

    if req.memory_bytes is not None and _not_host_root():
        from runtime.cgroups import limit_unavailable

        why = limit_unavailable(["memory"])
        if why:
            raise PybuildError(f"--memory: {why}")
    if req.pids_limit is not None and req.pids_limit < 0:
        return
    why = pids_limit_unavailable()
    if why is None:
        return
    if req.pids_limit is not None:
        raise PybuildError(f"--pids-limit {req.pids_limit}: {why}")
    if reporter is not None and any(isinstance(s.op, RunOp) for i in graph.needed() for s in graph.stages[i].steps):
        reporter.emit(W(f"RUN steps run without the default limit of {DEFAULT_RUN_PIDS_LIMIT} processes: {why}"))


def _not_host_root() -> bool:
    from runtime.namespaces import userns_root

    return os.geteuid() != 0 or userns_root()


def build(req: BuildRequest, settings: Settings, reporter: Reporter | None = None) -> BuildResult:
    import time

    rep = _Steps(reporter or NullReporter())
    t0 = time.monotonic()
    store, graph, solver, stat_cache, cache, bases = _setup(req, settings, rep)
    try:
        return _build(req, settings, rep, t0, store, graph, solver, stat_cache, cache, bases)
    finally:
        solver.sv.snaps.release()  # the image is tagged (or the build failed): end our lease


def _build(req: BuildRequest, settings: Settings, rep: "_Steps", t0: float, store: ImageStore, graph, solver,
           stat_cache, cache, bases) -> BuildResult:
    import time

    rep.emit(BuildStarted(len(solver.ids), str(req.context_dir or "")))  # the steps progress shows
    _check_limits(req, graph, rep)
    for w in graph.unused_args:
        from builder.report import Warning as W

        rep.emit(W(f"build argument {w!r} was not consumed by any ARG"))
    try:
        sol = solver.solve()
    except BaseException as e:
        rep.emit(BuildFinished(time.monotonic() - t0, error=getattr(e, "message", None) or type(e).__name__))
        if stat_cache is not None:
            stat_cache.save()
        raise
    if stat_cache is not None:
        stat_cache.save()
    cfg = sol.state.config
    if req.labels:
        cfg = cfg.with_config(labels={**(cfg.config.labels or {}), **req.labels})
    created = rfc3339(req.source_date_epoch) if req.source_date_epoch is not None else \
        max((h.created for h in cfg.history if h.created), default=None)
    from runtime.record import replace

    # BuildKit labels the image with the target platform even when the target stage is pinned
    # elsewhere (FROM --platform=$BUILDPLATFORM …): checked against the reference
    tos, _, trest = graph.platform.partition("/")
    tarch, _, tvariant = trest.partition("/")
    cfg = replace(cfg, created=created, architecture=tarch, os=tos, variant=tvariant or None)
    extra = None
    if req.inline_cache:
        from builder.engine.cache import inline_config

        extra = inline_config(cache, [k.key.key for k in sol.keys], sol.state.layers)
    desc = write_image(store.blobs, cfg, list(sol.state.layers), config_extra=extra)
    for t in req.tags:
        _tag_if_changed(store, t, desc)
    if req.cache_to is not None:
        n = cache.export_local([k.key.key for k in sol.keys], store.blobs, req.cache_to)
        rep.emit(StepProgress(0, f"exported {n} cache records to {req.cache_to}"))
    img = Image.load(store.blobs, desc)
    try:
        _write_memo(req, settings, solver, bases, desc, str(img.id), rep)
    except PybuildError:
        pass  # a reference we cannot name: no memo, the next build takes the full path
    secs = time.monotonic() - t0
    from builder.oci.reference import full_names

    rep.emit(BuildFinished(secs, image=str(img.id), tags=full_names(req.tags)))
    return BuildResult(desc, str(img.id), img, sol, graph, secs)


def _tag_if_changed(store: ImageStore, ref: str, desc: Descriptor) -> None:
    try:
        cur = store.resolve(ref)
        if cur.digest == desc.digest:
            return  # a no-op rebuild: leave index.json alone
    except (ImageNotFound, PybuildError):
        pass
    store.tag(ref, desc)


class Explanation(Record):
    step: str
    span_line: int | None
    hit: bool
    key: str
    nearest_key: str | None
    field: str | None
    before: object
    after: object
    reads: tuple[str, ...] = ()  # `content:<src>=<digest>` inputs read from other stages


def explain(req: BuildRequest, settings: Settings) -> list[Explanation]:
    """For each filesystem step: hit or miss, and for a miss the first field that differs from
    the nearest earlier record of the same step."""
    _store, _graph, solver, _sc, cache, _bases = _setup(req, settings, NullReporter())
    try:
        return _explain(solver, cache)
    finally:
        solver.sv.snaps.release()


def _explain(solver, cache) -> list[Explanation]:
    out: list[Explanation] = []
    for sk in solver.keys_only():
        line = sk.step.span.line if sk.step.span else None
        reads = tuple(i for i in sk.key.pre_image.get("inputs", ()) if i.startswith(("content:", "stage:")))
        if sk.hit:
            out.append(Explanation(sk.step.text, line, True, sk.key.key, None, None, None, None, reads))
            continue
        near = cache.nearest(sk.slot, exclude=sk.key.key)
        if near is None:
            out.append(Explanation(sk.step.text, line, False, sk.key.key, None, None, None, None, reads))
            continue
        f = ck.first_difference(near.pre_image, sk.key.pre_image)
        out.append(Explanation(sk.step.text, line, False, sk.key.key, near.key, f,
                               ck.lookup(near.pre_image, f or ""), ck.lookup(sk.key.pre_image, f or ""), reads))
    return out


__all__ = ["BuildRequest", "BuildResult", "build", "explain", "Explanation", "BuildStepError"]
