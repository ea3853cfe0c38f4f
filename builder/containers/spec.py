"""`docker run` flags → what a container runs: the image's process spec (through
builder.container for docker's config rules), its limits, mounts, capabilities, rlimits,
seccomp profile and extra hosts, and the runtime.SandboxConfig of all that. Shared by the
foreground `pybuild run`/`bundle` (builder.commands.run) and detached containers
(builder.containers.lifecycle).

Must not: start or stop anything, or import more than it uses: `pybuild run IMAGE true` has a
60 ms budget, so imports stay lazy.
"""
from __future__ import annotations

import os
import re
import sys

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*$", re.I)


def parse_bytes(text: str, flag: str) -> int:
    from builder.errors import UsageError

    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"invalid value {text!r} for {flag}: expected a size like 512m or 2g")
    mult = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def mounts(args, *, create_host_dirs: bool) -> list:
    from builder.errors import UsageError
    from runtime.config import Mount

    out = []
    for v in args.volume:
        parts = v.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise UsageError(f"invalid volume {v!r}: expected HOST:CONTAINER[:ro|rw]")
        host, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            raise UsageError(f"invalid volume {v!r}: mode must be ro or rw, not {mode!r}")
        if not host.startswith("/") and not host.startswith("."):
            raise UsageError(f"invalid volume {v!r}: named volumes are not supported; give a host path")
        if not target.startswith("/"):
            raise UsageError(f"invalid volume {v!r}: the container path must be absolute")
        host = os.path.abspath(host)
        if not os.path.exists(host):
            if not create_host_dirs:
                raise UsageError(f"invalid volume {v!r}: {host} does not exist")
            os.makedirs(host, exist_ok=True)  # as docker does for -v
        # the caller's own host path: its symlinks are followed here, on the host side; the
        # runtime then binds the object itself and refuses a source that is still a link
        out.append(Mount("bind", target, os.path.realpath(host), readonly=mode == "ro"))
    for t in args.tmpfs:
        path, _, opts = t.partition(":")
        if not path.startswith("/"):
            raise UsageError(f"invalid tmpfs {t!r}: the path must be absolute")
        out.append(Mount("tmpfs", path, "tmpfs", options=tuple(o for o in opts.split(",") if o)))
    return out


def security_opts(args) -> str:
    """The SandboxConfig.seccomp value for --security-opt: "default", "unconfined" or the
    (checked) text of a docker JSON profile. Errors are one line, before any work."""
    from builder.errors import UsageError

    seccomp = "default"
    for opt in args.security_opt:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")  # docker's older seccomp:FILE spelling
        if key != "seccomp" or not value:
            raise UsageError(f"invalid --security-opt {opt!r}: supported is seccomp=unconfined or seccomp=PROFILE.json")
        if value == "unconfined":
            seccomp = "unconfined"
            continue
        import json

        from runtime.seccomp import ProfileError, host_arch, load_profile, compile_profile
        try:
            prof = load_profile(value)
            compile_profile(prof, host_arch(), ())  # the program must also fit the kernel's limits
        except ProfileError as e:
            raise UsageError(f"invalid --security-opt {opt!r}: {e}") from None
        seccomp = json.dumps(prof, sort_keys=True, separators=(",", ":"))
    return seccomp


def normalize_mounts(args) -> None:
    """--mount values become the -v / --tmpfs forms they mean (docker's key names)."""
    from builder.errors import UsageError

    for spec in getattr(args, "mount", []):
        kv: dict[str, str] = {}
        flags = set()
        for part in spec.split(","):
            k, sep, v = part.partition("=")
            k = k.strip()
            if sep:
                kv[k] = v
            else:
                flags.add(k)
        kind = kv.get("type", "volume")
        target = kv.get("target") or kv.get("destination") or kv.get("dst")
        source = kv.get("source") or kv.get("src") or ""
        ro = "readonly" in flags or "ro" in flags or kv.get("readonly", kv.get("ro", "false")) in ("1", "true")
        if not target or not target.startswith("/"):
            raise UsageError(f"invalid --mount {spec!r}: target= must be an absolute path")
        if kind == "bind":
            if not source.startswith("/"):
                raise UsageError(f"invalid --mount {spec!r}: a bind needs an absolute source=")
            if not os.path.exists(source):
                raise UsageError(f"invalid --mount {spec!r}: bind source path does not exist: {source}")
            args.volume.append(f"{source}:{target}" + (":ro" if ro else ""))
        elif kind == "volume":
            if source.startswith(("/", ".")):
                raise UsageError(f"invalid --mount {spec!r}: a volume source is a volume name")
            args.volume.append(f"{source}:{target}" + (":ro" if ro else "") if source else target)
        elif kind == "tmpfs":
            opts = []
            if "tmpfs-size" in kv:
                opts.append(f"size={kv['tmpfs-size']}")
            if "tmpfs-mode" in kv:
                opts.append(f"mode={kv['tmpfs-mode']}")
            args.tmpfs.append(target + (":" + ",".join(opts) if opts else ""))
        else:
            raise UsageError(f"invalid --mount {spec!r}: type must be bind, volume or tmpfs")
    args.mount = []


def capabilities(args) -> tuple[str, ...]:
    from builder.errors import UsageError
    from runtime.config import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES

    def norm(c: str) -> str:
        c = c.upper()
        return c if c == "ALL" or c.startswith("CAP_") else "CAP_" + c
    caps = list(CAPABILITY_NUMBERS) if getattr(args, "privileged", False) else list(DEFAULT_CAPABILITIES)
    adds, drops = [norm(c) for c in getattr(args, "cap_add", [])], [norm(c) for c in getattr(args, "cap_drop", [])]
    for c in adds + drops:
        if c != "ALL" and c not in CAPABILITY_NUMBERS:
            raise UsageError(f"unknown capability {c!r}")
    if "ALL" in drops:
        caps = []
    caps = [c for c in caps if c not in drops]
    if "ALL" in adds:
        caps = list(CAPABILITY_NUMBERS)
    caps += [c for c in adds if c != "ALL" and c not in caps]
    # never more than this host's bounding set allows (a host may itself lack some)
    try:
        with open("/proc/self/status") as f:
            bnd = int(next(ln for ln in f if ln.startswith("CapBnd:")).split()[1], 16)
        caps = [c for c in caps if bnd >> CAPABILITY_NUMBERS[c] & 1]
    except (OSError, StopIteration, ValueError):
        pass
    return tuple(caps)


def rlimits(args) -> tuple:
    from builder.errors import UsageError
    from runtime.config import RLIMITS, Rlimit

    out = []
    for u in getattr(args, "ulimit", []):
        name, sep, vals = u.partition("=")
        soft, _, hard = vals.partition(":")
        hard = hard or soft
        if not sep or name not in RLIMITS or not soft.lstrip("-").isdigit() or not hard.lstrip("-").isdigit():
            raise UsageError(f"invalid --ulimit {u!r}: expected NAME=SOFT[:HARD] with NAME one of {', '.join(RLIMITS)}")
        s_, h_ = int(soft), int(hard)
        s_ = (1 << 64) - 1 if s_ < 0 else s_
        h_ = (1 << 64) - 1 if h_ < 0 else h_
        if s_ > h_:
            raise UsageError(f"invalid --ulimit {u!r}: the soft limit is above the hard one")
        out.append(Rlimit(name, s_, h_))
    return tuple(out)


def pull_if_needed(args) -> None:
    """--pull missing|always|never, as docker run does it."""
    policy = getattr(args, "pull", "missing")
    if policy == "never":
        return
    from builder import settings as settings_mod
    from builder.errors import ImageNotFound
    from builder.oci.layout import ImageStore

    store = ImageStore(settings_mod.load().store_dir)
    if policy == "missing":
        try:
            store.resolve(args.image)
            return
        except ImageNotFound:
            pass
    from builder.commands.registry import _options
    from builder.registry.transfer import pull
    sys.stderr.write(f"Unable to find image '{args.image}' locally\n" if policy == "missing" else "")
    pull(args.image, store, options=_options(args))


def limits(args):
    from builder.errors import UsageError
    from runtime.config import Limits

    if args.cpus is not None and args.cpus <= 0:
        raise UsageError("--cpus must be more than 0")
    if args.pids_limit is not None and args.pids_limit <= 0:
        raise UsageError("--pids-limit must be more than 0")
    mem = parse_bytes(args.memory, "--memory") if args.memory else None
    if mem is not None and mem < 6 << 20:
        raise UsageError("--memory: the minimum is 6m")
    return Limits(memory_bytes=mem, cpu_quota=args.cpus, pids=args.pids_limit)


def prepare(args, *, for_bundle: bool, hostname: str | None = None):  # noqa: ARG001
    """(image, snapshotter, chains, process spec) for `args.image`."""
    from builder import settings as settings_mod
    from builder.container import process_spec, read_env_file
    from builder.engine.fsview import LayeredFS
    from builder.oci.layout import ImageStore
    from builder.snapshot import Snapshotter, chain_ids

    st = settings_mod.load()
    store = ImageStore(st.store_dir)
    desc = store.resolve(args.image)
    img = image_for(store, desc, args)
    snaps = Snapshotter(st.snapshots_dir, st.tmp_dir)
    chains = chain_ids([str(d) for d in img.diff_ids])
    snaps.use(chains)  # leased until the caller releases it: prune leaves these layers alone
    try:
        for layer, chain in zip(img.layers, chains):
            if not snaps.has(chain):
                from builder.layers.unpack import apply_layer

                snaps.ensure(chain, lambda d, layer=layer: apply_layer(store.blobs.path(layer.digest), d,
                                                                        media_type=layer.media_type,
                                                                        whiteouts="overlay"))
        lowers = snaps.lowerdirs(chains) if chains else (str(snaps.empty_dir()),)
        env = []
        for f in args.env_file:
            env.extend(read_env_file(f))
        env.extend(args.env)
        view = LayeredFS(lowers)
        spec = process_spec(img.config.config.to_dict(), view.read_file, args=args.command,
                            entrypoint=args.entrypoint, env=env, workdir=args.workdir, user=args.user,
                            hostname=hostname, tty=args.tty)
    except BaseException:
        snaps.release()
        raise
    return st, img, snaps, lowers, spec


def image_for(store, desc, args):
    """The image to run: an index's entry for --platform (default: this machine's); a foreign
    one needs emulation (`run` only: a bundle is just files)."""
    from builder.oci.image import Image, host_platform

    if not getattr(args, "platform", None):
        img = Image.load(store.blobs, desc)
        want = None
    else:
        from builder import platforms
        from builder.engine.multiplatform import local_image, to_platform

        want = platforms.normalize(args.platform)
        img = Image.load(store.blobs, desc, to_platform(want))
        if local_image(store, args.image, desc, want) is None:
            from builder.errors import StoreError

            c = img.config
            raise StoreError(f"image {args.image} is {c.os}/{c.architecture}"
                             f"{'/' + c.variant if c.variant else ''}, not {want}")
    if args.command_name == "run" and img.config.architecture != host_platform().architecture:
        from builder import platforms

        platforms.require_emulation(want or f"{img.config.os}/{img.config.architecture}")
    return img


def sandbox_config(args, spec, rootfs, *, tty: bool, cid: str):
    from runtime.config import Process, SandboxConfig

    term = None
    if tty:
        try:
            sz = os.get_terminal_size(sys.stdout.fileno())
            term = (sz.lines, sz.columns)
        except OSError:
            term = None
    return SandboxConfig(
        rootfs=rootfs,
        process=Process(argv=spec.argv, env=spec.env, cwd=spec.cwd, uid=spec.uid, gid=spec.gid,
                        additional_gids=spec.additional_gids, tty=tty, terminal_size=term),
        mounts=tuple(mounts(args, create_host_dirs=True)),
        hostname=args.hostname or (os.uname().nodename if args.network == "host" else cid[:12]),
        network=args.network if args.network in ("host", "none") else "host",
        limits=limits(args),
        readonly_rootfs=args.read_only,
        init=args.init,
        seccomp=security_opts(args),
        extra_hosts=extra_hosts(args),
        capabilities=capabilities(args),
        rlimits=rlimits(args),
    )


def extra_hosts(args) -> tuple:
    from builder.errors import UsageError

    out = []
    for h in getattr(args, "add_host", []):
        name, sep, addr = h.partition(":")
        if not sep or not name or not addr:
            raise UsageError(f"invalid --add-host {h!r}: expected NAME:IP")
        out.append((name, addr))
    return tuple(out)
