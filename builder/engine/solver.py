"""The solver: walk a BuildGraph, hit the cache or execute each step, produce the image.

Owns: cache keys per step (parent key + normalized op + inputs; `keys_only` computes them all
without executing, for `cache explain`), hits (a record whose layer blob is still stored) and
misses (ops.run_step / transfer.copy_step / WORKDIR mkdir), config instructions and history
entries (through engine.imageconfig), stages in waves on a worker pool (the
image digest never depends on scheduling: every value is content-derived), progress events,
and error placement (the failing step's Dockerfile span is attached here, once).

Must not: print, parse Dockerfiles, tag images or write outputs (commands/build.py does).
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone

from builder.engine.cache import CacheRecord, CacheStore
from builder.engine.imageconfig import _history, apply_config
from builder.engine.ops import LayerResult, Services, State, ensure_snapshots, run_step, view_of
from builder.engine.transfer import copy_inputs, copy_step
from builder.errors import BuildStepError, ContextError, LayerError, PybuildError
from builder.oci.config import ImageConfig
from builder.plan import cachekey as ck
from builder.plan.graph import BaseOp, BuildGraph, ConfigOp, CopyOp, RunOp, Step
from builder.report import NullReporter, Reporter, StepCached, StepFinished, StepLog, StepStarted
from builder.snapshot import chain_id
from runtime.errors import SandboxError
from runtime.record import Record, field, replace


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class SolveOptions(Record, frozen=False):
    dockerfile: str = "Dockerfile"  # for cache slots (explain) only
    no_cache: bool = False
    no_cache_filter: frozenset[str] = frozenset()
    max_workers: int = 4
    shared: object | None = None  # a KeyLocks shared by concurrent builds (multi-platform): one executes a key


class StepKey(Record, frozen=False):
    step: Step
    key: ck.CacheKey
    slot: str
    hit: bool = False


class Solution(Record, frozen=False):
    state: State  # the target stage's final state
    stages: dict[int, State] = field(default_factory=dict)
    keys: list[StepKey] = field(default_factory=list)


def base_ref(ref: str, platform: str, target: str) -> str:
    """The key of a base image's state in `Solver.bases`: the ref for the target platform,
    `ref|platform` for a stage pinned to another one (`|` never appears in a reference)."""
    return ref if platform == target else f"{ref}|{platform}"


def _is_fs(op) -> bool:
    return isinstance(op, (RunOp, CopyOp)) or (isinstance(op, ConfigOp) and op.name == "WORKDIR")


class Solver:
    def __init__(self, graph: BuildGraph, sv: Services, cache: CacheStore, *, bases: dict[str, State],
                 reporter: Reporter | None = None, options: SolveOptions | None = None) -> None:
        self.g = graph
        self.sv = sv
        self.cache = cache
        self.bases = bases  # image ref -> State of the pulled/local base image
        self.rep = reporter or NullReporter()
        self.opt = options or SolveOptions()
        self.finals: dict[int, State] = {}
        self.lock = threading.Lock()
        # fail-fast (BuildKit's): the first failing step sets `cancel`; running RUNs are killed,
        # COPYs stop at the next file, queued stages do not start; its stage is `failed_stage`.
        self.cancel = threading.Event()
        self.failed_stage: int | None = None
        self.keys: list[StepKey] = []
        self.unknown: set[int] = set()  # keys_only: stages whose output needs a step that misses
        from builder.engine.contentkey import ContentMemo

        self.content_memo = ContentMemo(cache.dir.parent, cache.tmp)
        self.ids: dict[tuple[int, int], int] = {}
        n = 0
        for si in graph.needed():
            st = graph.stages[si]
            for s in st.steps:
                if (isinstance(s.op, BaseOp) and not _hidden_base(s.op)) or _is_fs(s.op):
                    n += 1
                    self.ids[(si, s.index)] = n
        # a RUN may execute: start the sandbox fork server at the first miss (see _prewarm)
        self._may_run = any(isinstance(s.op, RunOp) for si in graph.needed() for s in graph.stages[si].steps)
        sv.stage_rootfs = lambda i: self.finals[i]
        sv.image_state = self.image_state

    # -- naming -----------------------------------------------------------------------
    def _name(self, step: Step) -> str:
        st = self.g.stages[step.stage]
        total, index = len(st.steps), step.index
        if _hidden_base(st.steps[0].op):  # BuildKit counts no FROM step for `FROM stage`/scratch
            total, index = total - 1, index - 1
        multi = len(self.g.needed()) > 1
        label = f"{st.label} {index}/{total}" if multi else f"{index}/{total}"
        return f"[{label}] {_display_text(step)}"

    def image_state(self, ref: str) -> State:
        if ref not in self.bases:
            raise BuildStepError(f"image {ref!r} was not resolved before the build (internal)")
        return self.bases[ref]

    # -- base --------------------------------------------------------------------------
    def base_state(self, step: Step) -> State:
        op: BaseOp = step.op  # type: ignore[assignment]
        if op.stage is not None:
            st = self.finals[op.stage]
            if st.config.config.on_build:  # its triggers run in this stage: not inherited further
                st = replace(st, config=st.config.with_config(on_build=()))
            return st
        assert op.image is not None
        plat = self.g.platform_of(step.stage)
        if op.image == "scratch":
            os_, _, arch = plat.partition("/")
            from builder.oci.config import ContainerConfig
            from builder.plan.planner import DEFAULT_PATH

            # BuildKit's empty image: PATH set and the working directory "/"
            cfg = ImageConfig(architecture=arch.split("/")[0], os=os_,
                              config=ContainerConfig(env=(DEFAULT_PATH,), working_dir="/"))
            return State(cfg, key=ck.make_key("from", None, {"image": "scratch", "platform": plat}).key)
        st = self.bases[base_ref(op.image, plat, self.g.platform)]
        if st.config.config.on_build:  # triggers ran in this stage: the result does not inherit them
            st = replace(st, config=st.config.with_config(on_build=()))
        if not any(e.startswith("PATH=") for e in st.config.config.env):
            from builder.plan.planner import DEFAULT_PATH

            st = replace(st, config=st.config.with_config(env=(DEFAULT_PATH,) + st.config.config.env))
        return st

    # -- keys --------------------------------------------------------------------------
    def step_key(self, step: Step, state: State) -> ck.CacheKey:
        op = step.op
        c = state.config.config
        if isinstance(op, RunOp):
            return ck.make_key("run", state.key, ck.run_op(op, env=c.env, args=step.args, workdir=c.working_dir,
                                                          user=c.user, platform=self.g.platform_of(step.stage)),
                               self._mount_inputs(op))
        if isinstance(op, CopyOp):
            inputs = copy_inputs(self.sv, step, state, self.source_content)
            k = ck.make_key("copy", None if op.link else state.key,
                            ck.copy_op(op, dest=op.dest if op.dest.startswith("/") else
                                       os.path.join(c.working_dir or "/", op.dest),
                                       platform=self.g.platform_of(step.stage)),
                            inputs)
            return k
        assert isinstance(op, ConfigOp)
        return ck.make_key("workdir", state.key, ck.workdir_op(op, path=c.working_dir, user=c.user))

    def _mount_inputs(self, op: RunOp) -> list[str]:
        """What bind mounts read: context content, or the content read from a stage / an image."""
        out = []
        for m in op.mounts:
            if m.type != "bind":
                continue
            if m.source_from is None:
                ctx = self.sv.context
                if ctx is None:
                    continue
                out.extend(f"{s.rel}:{ctx.digest(s)}" for s in ctx.select(m.source or "."))
            else:
                out.extend(self.source_content(m.source_from, [m.source or "/"]))
        return out

    def source_content(self, src, sources) -> list[str]:
        """Inputs for reading `sources` from a stage or an image (a CopyFrom): their content
        digests (the cut-off: engine/contentkey.py; BuildKit keys these by content too, so a
        re-tagged image with the same files still hits). Under `keys_only`, a stage with a step
        that would miss has no known output yet: its key stands in (what would run decides)."""
        from builder.engine.contentkey import stage_inputs

        if src.stage is not None:
            st = self.finals[src.stage]
            if src.stage in self.unknown:
                return [f"stage:{st.key}"]
        else:
            st = self.image_state(src.image)

        def view():
            ensure_snapshots(self.sv, st)
            return view_of(self.sv, st)
        return stage_inputs(st.chains, list(sources), self.content_memo, view)

    def _slot(self, step: Step) -> str:
        return f"{self.opt.dockerfile}#{self.g.stages[step.stage].label}#{step.index}"

    def _no_cache(self, step: Step) -> bool:
        st = self.g.stages[step.stage]
        return self.opt.no_cache or (st.name or "").lower() in self.opt.no_cache_filter \
            or str(step.stage) in self.opt.no_cache_filter

    # -- records -----------------------------------------------------------------------
    def _apply(self, state: State, step: Step, rec: CacheRecord, key: str) -> State:
        op = step.op
        next_key = key
        if isinstance(op, CopyOp) and op.link:
            next_key = ck.make_key("chain", state.key, {}, [key]).key  # a linked layer still follows its parent
        if rec.layer is None:
            cfg = state.config.with_history(_history(rec.created, step, state.config.config.working_dir))
            return replace(state, config=cfg, key=next_key, created=rec.created)
        chain = chain_id(state.chains[-1] if state.chains else None, rec.diff_id)  # type: ignore[arg-type]
        cfg = state.config.with_layer(rec.diff_id, _history(rec.created, step, state.config.config.working_dir))  # type: ignore[arg-type]
        return State(cfg, state.layers + (rec.descriptor,), state.chains + (chain,), next_key, rec.created)

    def _now(self) -> str:
        sde = self.sv.source_date_epoch
        return rfc3339(sde if sde is not None else time.time())

    # -- execution ---------------------------------------------------------------------
    def _execute(self, step: Step, state: State, sid: int, key: ck.CacheKey | None = None) -> LayerResult | None:
        op = step.op
        if isinstance(op, RunOp):
            return run_step(self.sv, step, state, lambda text, stream: self.rep.emit(StepLog(sid, text, stream)),
                            cancel=self.cancel)
        if isinstance(op, CopyOp):
            share = None
            if self.opt.shared is not None and key is not None:  # several platforms: one copy may do for all
                from builder.engine.copyshare import share_key

                share = share_key(op, key.pre_image, workdir=state.config.config.working_dir,
                                  compression=self.sv.compression, source_date_epoch=self.sv.source_date_epoch)
            return copy_step(self.sv, step, state, cancel=self.cancel, shared=self.opt.shared, share=share)
        return self._workdir(step, state)

    def _workdir(self, step: Step, state: State) -> LayerResult | None:
        from builder.engine.copier import copy_up
        from builder.engine.ops import commit, resolve_user

        ensure_snapshots(self.sv, state)
        path = state.config.config.working_dir
        view = view_of(self.sv, state)
        active = self.sv.snaps.prepare()
        if view.find(view.resolve(path)) is not None:
            return commit(self.sv, active, state)  # an empty layer, as BuildKit's
        try:
            view2 = view_of(self.sv, state, active.upper)
            real = view2.resolve(path)
            # every directory WORKDIR creates belongs to the USER in effect (BuildKit)
            uid, gid, _ = resolve_user(state.config.config.user, view) if state.config.config.user else (0, 0, ())
            copy_up(view2, active.upper, real, new_owner=(uid, gid))
        except BaseException:
            self.sv.snaps.discard(active)
            raise
        return commit(self.sv, active, state)

    def solve_stage(self, si: int) -> State:
        if self.cancel.is_set():  # queued behind a failure: never starts
            raise Cancelled
        try:
            return self._solve_stage(si)
        except Cancelled:
            raise
        except BaseException:
            self._fail(si)
            raise

    def _solve_stage(self, si: int) -> State:
        stage = self.g.stages[si]
        first = stage.steps[0]
        state = self.base_state(first)
        if (si, 1) in self.ids:  # an image base (resolved before solving); BuildKit shows no other
            self.rep.emit(StepCached(self.ids[(si, 1)], self._name(first)))
        cmd_set = False
        for step in stage.steps[1:]:
            if self.cancel.is_set():
                raise Cancelled
            op = step.op
            if isinstance(op, ConfigOp):
                cfg, cmd_set = apply_config(state.config, op, cmd_set)
                state = replace(state, config=cfg)
                if op.name != "WORKDIR":
                    if step.history is not None:  # ONBUILD leaves no history entry (BuildKit)
                        state = replace(state, config=state.config.with_history(
                            _history(state.created, step)))
                    continue
            state = self._shared_step(step, state) if self.opt.shared is not None else self._fs_step(step, state)
        return state

    def _shared_step(self, step: Step, state: State) -> State:
        """Builds of several platforms at once share work: the first to reach a key executes it,
        the others wait for its record, then hit (see engine/multiplatform.py)."""
        try:
            key = self.step_key(step, state).key
        except PybuildError:
            return self._fs_step(step, state)  # _fs_step raises it again, placed on the step
        with self.opt.shared.hold(key):  # type: ignore[union-attr]
            return self._fs_step(step, state)

    def _fs_step(self, step: Step, state: State) -> State:
        sid = self.ids[(step.stage, step.index)]
        name = self._name(step)
        try:
            key = self.step_key(step, state)
            sk = StepKey(step, key, self._slot(step))
            with self.lock:
                self.keys.append(sk)
            rec = None if self._no_cache(step) else self.cache.get(key.key)
            if rec is not None and (rec.layer is None or self.sv.blobs.has(rec.layer["digest"])):
                sk.hit = True
                self.rep.emit(StepCached(sid, name))
                return self._apply(state, step, rec, key.key)
            self.rep.emit(StepStarted(sid, name))
            self._prewarm()
            t0 = time.monotonic()
            try:
                res = self._execute(step, state, sid, key)
            except BaseException as e:
                dt = time.monotonic() - t0
                if isinstance(e, KeyboardInterrupt) and self.cancel.is_set():
                    self.rep.emit(StepFinished(sid, dt, canceled=True))
                    raise Cancelled from None
                self._fail(step.stage)  # cancel the other stages before reporting
                self.rep.emit(StepFinished(sid, dt, error=_short(e)))
                raise
            rec = CacheRecord(key=key.key, layer=res.descriptor.to_dict() if res else None,
                         diff_id=res.diff_id if res else None, created=self._now(), slot=sk.slot,
                         pre_image=key.pre_image, text=step.text, chain=res.chain if res else None)
            self.cache.put(rec)
            self.rep.emit(StepFinished(sid, time.monotonic() - t0))
            return self._apply(state, step, rec, key.key)
        except (ContextError, LayerError) as e:  # (a layer error: e.g. a tree too deep to name)
            raise BuildStepError(e.message, step.span, hint=e.hint) from None
        except SandboxError as e:  # the process could not even start (no shell, bad mount…)
            raise BuildStepError(f"{step.text.split()[0]} could not start: {e}", step.span) from None
        except BuildStepError as e:
            if e.span is None:
                e.span = step.span
            raise

    def _prewarm(self) -> None:
        """At the first miss, start the sandbox fork server when the graph has a RUN: every key
        after a miss misses too, so a RUN will likely execute, and the server's Python start-up
        (~30-50 ms) then overlaps this step (e.g. a COPY) instead of delaying the first RUN. A
        build that only hits never pays for it."""
        if not self._may_run:
            return
        self._may_run = False
        from runtime import sandbox

        try:
            sandbox.prewarm()
        except OSError:
            pass  # the first RUN starts it again and reports a failure where it matters

    def _fail(self, si: int) -> None:
        """Stage `si` failed (not cancelled): the first such stage's error is the build's error;
        every other running step is cancelled now (BuildKit's fail-fast)."""
        with self.lock:
            if self.failed_stage is None and not self.cancel.is_set():
                self.failed_stage = si
            self.cancel.set()

    def solve(self) -> Solution:
        """Every needed stage, wave by wave (stages in a wave run concurrently). The first
        failure cancels the other stages at once (fail-fast) and is the error raised."""
        workers = max(1, self.opt.max_workers)
        interrupted = False
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage") as pool:
            for wave in self.g.waves():
                futs = {pool.submit(self.solve_stage, si): si for si in wave}
                pending = set(futs)
                errors: dict[int, BaseException] = {}
                while pending:
                    try:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    except KeyboardInterrupt:  # Ctrl-C/SIGTERM in this thread: stop every stage
                        interrupted = True
                        self.cancel.set()
                        continue
                    for f in done:
                        try:
                            self.finals[futs[f]] = f.result()
                        except BaseException as e:  # noqa: BLE001 - collected, the first failure wins
                            errors[futs[f]] = e
                if interrupted:
                    raise KeyboardInterrupt
                if errors:
                    if self.failed_stage in errors:
                        raise errors[self.failed_stage]
                    raise next(iter(errors.values()))
        return Solution(self.finals[self.g.target], dict(self.finals), list(self.keys))

    def keys_only(self) -> list[StepKey]:
        """All step keys without executing anything (misses stop nothing): for `cache explain`.
        Hits are applied as a build would (so a later `COPY --from` can hash that stage's
        content); after a miss, the stage's output is unknown."""
        for wave in self.g.waves():
            for si in wave:
                stage = self.g.stages[si]
                state = self.base_state(stage.steps[0])
                if getattr(stage.steps[0].op, "stage", None) in self.unknown:
                    self.unknown.add(si)
                cmd_set = False
                for step in stage.steps[1:]:
                    op = step.op
                    if isinstance(op, ConfigOp):
                        cfg, cmd_set = apply_config(state.config, op, cmd_set)
                        state = replace(state, config=cfg)
                        if op.name != "WORKDIR":
                            continue
                    key = self.step_key(step, state)
                    rec = self.cache.get(key.key)
                    usable = rec is not None and (rec.layer is None or self.sv.blobs.has(rec.layer["digest"]))
                    self.keys.append(StepKey(step, key, self._slot(step), rec is not None))
                    if usable and si not in self.unknown:
                        state = self._apply(state, step, rec, key.key)  # its layers: content stays known
                        continue
                    self.unknown.add(si)
                    next_key = key.key
                    if isinstance(op, CopyOp) and op.link:
                        next_key = ck.make_key("chain", state.key, {}, [key.key]).key
                    state = replace(state, key=next_key)
                self.finals[si] = state
        return self.keys


def _hidden_base(op) -> bool:
    """`FROM <stage>` and `FROM scratch`: no step of their own in progress (BuildKit's vertices)."""
    return isinstance(op, BaseOp) and (op.stage is not None or op.image == "scratch")


def _display_text(step: Step) -> str:
    """The step as progress shows it: `FROM image` with the image's full name, as BuildKit
    (`FROM docker.io/library/busybox:latest`, no `AS name`); other steps as written."""
    op = step.op
    if isinstance(op, BaseOp) and op.image is not None and op.image != "scratch":
        from builder.errors import InvalidReference
        from builder.oci.reference import parse_reference

        try:
            return f"FROM {parse_reference(op.image)}"
        except InvalidReference:
            return f"FROM {op.image}"  # e.g. an oci-layout:// base: its own name
    return step.text


class Cancelled(KeyboardInterrupt):
    """A step or stage stopped because another one failed (or the build was interrupted)."""


def _short(e: BaseException) -> str:
    if isinstance(e, PybuildError):
        return e.message
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    return f"{type(e).__name__}: {e}"
