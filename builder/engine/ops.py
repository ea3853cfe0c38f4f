"""Executing one filesystem step on a miss: RUN in the sandbox, COPY/ADD, WORKDIR's mkdir.

Owns: `State` (a stage's image so far: config, layer descriptors, snapshot chain ids, cache key,
last history time), `Services` (the stores and options a step needs), snapshot preparation
(base layers unpacked once as overlay lowerdirs), RUN (a `runtime` SandboxConfig on an overlay
of the stage's snapshots plus a fresh upper; --mount cache/bind/tmpfs/secret/ssh; USER and env),
COPY/ADD (context, other stages, images, heredocs; ADD archives, URLs and git), and committing
an upper as a layer + snapshot.

Must not: decide cache hits or order steps (solver.py), print (output goes to a callback), or
let secrets reach layers, keys or history.
"""
from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from pathlib import Path

from builder.context import BuildContext
from builder.engine.fsview import LayeredFS
from builder.engine.steplog import StepLog
from builder.engine.mounts import RunMounts, Secret  # noqa: F401  (Secret: the CLI builds these)
from builder.errors import BuildStepError, PybuildError, RunFailed
from builder.layers.changes import changes_from_upper
from builder.layers.tarball import write_layer
from builder.layers.unpack import apply_layer
from builder.oci.config import ImageConfig
from builder.oci.model import Descriptor
from builder.oci.store import DirStore
from builder.plan.graph import RunOp, Step
from builder.snapshot import Active, Snapshotter, chain_id
from runtime.record import Record, field


class State(Record):
    config: ImageConfig
    layers: tuple[Descriptor, ...] = ()
    chains: tuple[str, ...] = ()
    key: str | None = None  # the cache key of the last filesystem step (or the base's identity)
    created: str | None = None  # the last history time (config-only steps reuse it)


class Services(Record, frozen=False):
    blobs: DirStore
    snaps: Snapshotter
    tmp: Path
    cache_mounts: Path
    context: BuildContext | None
    compression: str = "gzip"  # as BuildKit: every registry client (docker 20.10 too) pulls it
    source_date_epoch: int | None = None
    secrets: dict[str, Secret] = field(default_factory=dict)
    ssh: dict[str, str] = field(default_factory=dict)
    network: str = "default"
    stage_rootfs: Callable[[int], "State"] | None = None  # final state of a stage (COPY --from)
    image_state: Callable[[str], "State"] | None = None  # a base image's state (COPY --from=image)
    remote_inputs: bool = False  # an ADD read a URL or git repository (the memo must not vouch)
    pids_limit: int | None = None  # RUN's pids cgroup limit; None = DEFAULT_RUN_PIDS_LIMIT when the host can, -1: none
    memory_bytes: int | None = None  # RUN's memory cgroup limit (build --memory); None: none
    allow_insecure: bool = False  # `--allow security.insecure` given (RUN --security=insecure may run)


# ---------------------------------------------------------------------------------------------
# snapshots and commits


def ensure_snapshots(sv: Services, state: State) -> None:
    """Every layer of `state` unpacked as an overlay lowerdir (once; reused by chain id), and
    leased for this build first (prune keeps them)."""
    sv.snaps.use(state.chains)
    for desc, chain in zip(state.layers, state.chains):
        if sv.snaps.has(chain):
            continue

        def fill(d: Path, desc: Descriptor = desc) -> None:
            apply_layer(sv.blobs.path(desc.digest), d, media_type=desc.media_type, whiteouts="overlay")

        sv.snaps.ensure(chain, fill)


def view_of(sv: Services, state: State, upper: Path | None = None) -> LayeredFS:
    lowers = [Path(p) for p in sv.snaps.lowerdirs(state.chains)]
    return LayeredFS(([upper] if upper is not None else []) + lowers)


class LayerResult(Record):
    descriptor: Descriptor
    diff_id: str
    chain: str


# A fork bomb in a RUN must not take the host down: like podman's default pids_limit, every RUN
# gets a pids cgroup (threads count too, so this leaves room for big JVM/Go builds).
DEFAULT_RUN_PIDS_LIMIT = 2048


@functools.lru_cache(maxsize=1)
def pids_limit_unavailable() -> str | None:
    """Why this process cannot set a pids limit when it is not the host's root (rootless without
    a delegated cgroup), else None. Root is not asked: its cgroup errors stay errors."""
    from runtime.cgroups import limit_unavailable
    from runtime.namespaces import userns_root

    if os.geteuid() == 0 and not userns_root():
        return None
    return limit_unavailable(["pids"])


def default_pids_limit() -> int | None:
    """DEFAULT_RUN_PIDS_LIMIT where a pids controller exists (v1 hierarchy or v2 root) and this
    process may write it, else None: a host without one (or rootless without a delegated
    cgroup) still builds rather than failing every RUN (the build warns once)."""
    if pids_limit_unavailable() is not None:
        return None
    if os.path.isdir("/sys/fs/cgroup/pids"):
        return DEFAULT_RUN_PIDS_LIMIT
    for f in ("/sys/fs/cgroup/cgroup.controllers", "/sys/fs/cgroup/unified/cgroup.controllers"):
        try:
            with open(f) as fh:
                if "pids" in fh.read().split():
                    return DEFAULT_RUN_PIDS_LIMIT
        except OSError:
            pass
    return None


def commit(sv: Services, active: Active, state: State) -> LayerResult | None:
    """The upper as a layer and as the next snapshot. A step that changed nothing still gets
    its (empty) layer, as BuildKit's exporter writes one for every RUN/COPY/ADD/WORKDIR."""
    try:
        changes = changes_from_upper(active.upper)
    except BaseException:
        sv.snaps.discard(active)  # (e.g. a tree too deep to name: the upper must not leak)
        raise
    try:
        info = write_layer(changes, sv.blobs, compression=sv.compression, source_date_epoch=sv.source_date_epoch)
    except BaseException:
        # e.g. the disk filled up: drop the upper too, or every failed step leaks a full copy of
        # its changes under tmp/ (and the disk stays full for the next build).
        sv.snaps.discard(active)
        raise
    chain = chain_id(state.chains[-1] if state.chains else None, str(info.diff_id))
    sv.snaps.commit(active, chain, info.descriptor.size)
    return LayerResult(info.descriptor, str(info.diff_id), chain)


# ---------------------------------------------------------------------------------------------
# users


def resolve_user(spec: str, view: LayeredFS) -> tuple[int, int, tuple[int, ...]]:
    """USER `name|uid[:group|gid]` → (uid, gid, supplementary gids) through the image's files
    (docker's rules, shared with `pybuild run`: builder.container.resolve_user)."""
    from builder.container import resolve_user as _resolve

    try:
        return _resolve(spec, view.read_file)
    except BuildStepError:
        raise
    except PybuildError as e:
        raise BuildStepError(e.message) from None


# ---------------------------------------------------------------------------------------------
# RUN


def _env_for_run(state: State, step: Step) -> tuple[str, ...]:
    env = list(state.config.config.env)
    at = {e.split("=", 1)[0]: i for i, e in enumerate(env)}
    for k, v in step.args:
        if k in at:
            env[at[k]] = f"{k}={v}"  # an ARG declared after an ENV of its name wins in RUN (BuildKit)
        else:
            env.append(f"{k}={v}")
    return tuple(env)


def _from_state(sv: Services, src) -> State:
    if src.stage is not None:
        assert sv.stage_rootfs is not None
        return sv.stage_rootfs(src.stage)
    assert sv.image_state is not None
    return sv.image_state(src.image)


_TAIL_BYTES = 4096

# the host name a RUN step sees under BuildKit (its `hostname`, $HOSTNAME in heredocs)
RUN_HOSTNAME = "buildkitsandbox"


def run_step(sv: Services, step: Step, state: State, log: Callable[[str, str], None],
             cancel=None) -> LayerResult | None:
    """Execute a RUN on a miss; raises RunFailed with the exit status and the output tail."""
    from collections import deque

    from builder.container import with_home
    from runtime import sandbox
    from runtime.config import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES, Limits, Process, Rootfs, SandboxConfig

    op: RunOp = step.op  # type: ignore[assignment]
    ensure_snapshots(sv, state)
    active = sv.snaps.prepare()
    mounts = RunMounts(sv, step)
    tail: deque[str] = deque(maxlen=20)
    try:
        view = view_of(sv, state)
        cfg = state.config.config
        uid, gid, extra = resolve_user(cfg.user, view)
        workdir = cfg.working_dir or "/"
        mount_list = mounts.build(op.mounts, workdir) + mounts.heredocs(op.heredocs)
        network = op.network if op.network != "default" else sv.network
        spec = sv.snaps.mount_spec(state.chains, active)
        insecure = op.security == "insecure"
        if insecure and not sv.allow_insecure:  # (the engine checks this before the build starts)
            raise BuildStepError("security.insecure is not allowed", step.span)
        config = SandboxConfig(
            rootfs=Rootfs(lowerdirs=spec.lowerdirs, upperdir=spec.upperdir, workdir=spec.workdir),
            process=Process(argv=op.argv, env=with_home(_env_for_run(state, step) + tuple(mounts.env), cfg.user,
                                                        view.read_file), cwd=workdir,
                            uid=uid, gid=gid, additional_gids=extra),
            mounts=tuple(mount_list),
            hostname=RUN_HOSTNAME,
            network="none" if network == "none" else "host",
            limits=Limits(pids=default_pids_limit() if sv.pids_limit is None
                          else None if sv.pids_limit < 0 else sv.pids_limit, memory_bytes=sv.memory_bytes),
            # BuildKit's insecure mode: every capability and no seccomp filter
            capabilities=tuple(CAPABILITY_NUMBERS) if insecure else DEFAULT_CAPABILITIES,
            seccomp="unconfined" if insecure else "default",
        )

        # BuildKit's per-step log limits; what is clipped goes to $ROOT/logs/ (builder.engine.steplog)
        steplog = StepLog(log, sv.tmp.parent / "logs", f"{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(4).hex()}")

        def out(data: bytes, stream: str = "stdout") -> None:
            # the tail shown when the RUN fails: the last lines, each cut to a screenful
            for ln in data[-_TAIL_BYTES:].decode(errors="replace").splitlines():
                tail.append(ln[-_TAIL_BYTES:])
            steplog.feed(data, stream)

        try:
            res = sandbox.run(config, stdout=lambda d: out(d, "stdout"), stderr=lambda d: out(d, "stderr"),
                              cancel=cancel)
        finally:
            steplog.close()
        if getattr(res, "cancelled", False):
            raise KeyboardInterrupt
        if res.exit_code != 0 or getattr(res, "signal", None):
            cmd = " ".join(op.argv[2:] if op.shell_form and len(op.argv) > 2 else op.argv)
            why = (f"was killed by signal {res.signal}" if getattr(res, "signal", None)
                   else f"exited with status {res.exit_code}")
            if getattr(res, "oom_killed", False):
                why += " (out of memory)"
            raise RunFailed(f"RUN {cmd!r} {why}", step.span, exit_code=res.exit_code,
                            signal=getattr(res, "signal", None), output_tail="\n".join(tail))
    except BaseException:
        mounts.close()
        sv.snaps.discard(active)
        raise
    mounts.close()
    _keep_mount_points(view, active.upper)
    return commit(sv, active, state)


# runc makes these mount points in a rootfs that lacks them; BuildKit's RUN leaves them in its
# layer (its /etc/hosts and /etc/resolv.conf stubs it removes): FROM scratch + RUN keeps /dev,
# /proc and /sys as empty 0755 directories.
_RUNC_MOUNT_POINTS = ("dev", "proc", "sys")


def _keep_mount_points(view: LayeredFS, upper: Path) -> None:
    for name in _RUNC_MOUNT_POINTS:
        p = Path(upper) / name
        if view.find("/" + name) is None and not os.path.lexists(p):
            p.mkdir(mode=0o755)
            os.chmod(p, 0o755)
