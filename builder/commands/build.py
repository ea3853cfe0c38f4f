"""`pybuild build`: docker-compatible flags → a BuildRequest → the engine → outputs.

Owns: flag parsing (-t, -f PATH|-, --build-arg, --target, --no-cache, --no-cache-filter, --pull,
--progress, -o/--output, --label, --platform, --iidfile, --metadata-file, --secret, --ssh,
--network, -q, --cache-from/--cache-to type=local, --check), the context argument (a directory,
`-` for a tar on stdin, or a tarball), writing outputs (oci/docker/tar/local/image), and choosing
the reporter. Must not: hold build logic (builder.engine.build does).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from builder.commands.build_inputs import read_inputs
from builder.layers import fstree


def add_parser(sub) -> None:
    p = sub.add_parser("build", help="build an image from a Dockerfile")
    add_build_flags(p)


def add_build_flags(p) -> None:
    """Every `pybuild build` flag (also used by `pybuild cache explain`)."""
    p.add_argument("context", metavar="PATH | - | TARBALL", help="build context: a directory, - (tar on stdin) or a tar")
    p.add_argument("-t", "--tag", action="append", default=[], help="name:tag for the image (repeatable)")
    p.add_argument("-f", "--file", help="Dockerfile path (default: PATH/Dockerfile); - reads stdin")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]")
    p.add_argument("--target", help="build this stage")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("--no-cache-filter", action="append", default=[], metavar="STAGE",
                   help="do not use the cache for this stage (repeatable)")
    p.add_argument("--pull", action="store_true", help="always pull base images")
    p.add_argument("--progress", choices=["auto", "tty", "plain", "json", "rawjson", "quiet"], default="auto")
    p.add_argument("-o", "--output", action="append", default=[], metavar="DIR|-|type=…[,key=value…]",
                   help="as buildx: DIR (type=local), - (type=tar to stdout), or type=oci|docker|image|registry|local|tar,…")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--platform", default=None, metavar="OS/ARCH[/VARIANT][,…]",
                   help="target platform(s) (default: this machine's); several build one image index")
    p.add_argument("--iidfile", help="write the image id here")
    p.add_argument("--metadata-file", help="write build metadata (JSON) here")
    p.add_argument("--secret", action="append", default=[], metavar="id=ID,src=FILE|env=VAR")
    p.add_argument("--ssh", action="append", default=[], metavar="default|ID[=SOCKET]")
    p.add_argument("--network", choices=["default", "none", "host"], default="default")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p.add_argument("--cache-from", action="append", default=[],
                   metavar="IMAGE|type=local,src=DIR|type=registry,ref=REF")
    p.add_argument("--cache-to", metavar="type=inline|type=local,dest=DIR|type=registry,ref=REF[,mode=min|max][,mounts=true]")
    p.add_argument("--push", action="store_true", help="push the image to its -t names after the build")
    p.add_argument("--check", action="store_true", help="lint the Dockerfile and stop")
    p.add_argument("--jobs", type=int, default=4, help="stages built at once")
    p.add_argument("--pids-limit", type=int, default=None, metavar="N",
                   help="processes + threads one RUN may have (default 2048; -1: no limit)")
    p.add_argument("--memory", metavar="BYTES", default=None,
                   help="memory one RUN may use, e.g. 256m (docker's classic builder flag; default: no limit)")
    p.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                   help="grant an entitlement: security.insecure (RUN --security=insecure), network.host")


def _kv(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in spec.split(","):
        if not part:
            continue
        k, sep, v = part.partition("=")
        out[k.strip()] = v if sep else ""
    return out


def _secrets(specs: list[str]):
    from builder.engine.mounts import Secret
    from builder.errors import UsageError

    out = {}
    for s in specs:
        kv = _kv(s)
        sid = kv.get("id")
        if not sid:
            raise UsageError(f"--secret {s!r}: id= is required")
        src = kv.get("src") or kv.get("source")
        env = kv.get("env")
        if src is None and env is None:
            if os.environ.get(sid) is not None:
                env = sid
            else:
                raise UsageError(f"--secret {s!r}: give src=FILE or env=VAR")
        if src is not None and not os.path.isfile(src):
            raise UsageError(f"--secret {s!r}: {src} is not a file")
        out[sid] = Secret(sid, path=os.path.abspath(src) if src else None, env=env)
    return out


def _ssh(specs: list[str]) -> dict[str, str]:
    from builder.errors import UsageError

    out = {}
    for s in specs:
        sid, _, path = s.partition("=")
        path = path or os.environ.get("SSH_AUTH_SOCK", "")
        if not path or not os.path.exists(path):
            raise UsageError(f"--ssh {s!r}: no agent socket (set SSH_AUTH_SOCK or give ID=PATH)")
        out[sid or "default"] = os.path.abspath(path)
    return out


def _cache_from_spec(spec: str) -> str:
    """buildx's shorthand: `--cache-from IMAGE` (no `=`) is `type=registry,ref=IMAGE`."""
    return spec if "=" in spec else f"type=registry,ref={spec}"


def _inline(args) -> bool:
    """`--cache-to type=inline`: the cache goes into the image config (no other key allowed)."""
    from builder.errors import UsageError

    if not args.cache_to or _kv(args.cache_to).get("type") != "inline":
        return False
    extra = set(_kv(args.cache_to)) - {"type", "mode"}
    if extra or _kv(args.cache_to).get("mode", "min") != "min":
        raise UsageError(f"--cache-to {args.cache_to}: type=inline takes no other option (mode=min only)")
    return True


def _cache_dir(spec: str, key: str, flag: str) -> Path:
    from builder.errors import UsageError

    kv = _kv(spec)
    if kv.get("type") == "registry":  # the registry helper maps it onto a local cache dir
        from builder.commands.registry import registry_cache_dir

        return registry_cache_dir(spec, key, flag)
    if kv.get("type", "local") != "local":
        raise UsageError(f"{flag}: only type=local is supported here ({spec!r})")
    d = kv.get(key) or kv.get("dest" if key == "src" else "src")
    if not d:
        raise UsageError(f"{flag}: {key}=DIR is required")
    return Path(d).absolute()


def _build_args(specs: list[str]) -> dict[str, str]:
    from builder.errors import UsageError

    out = {}
    for s in specs:
        k, sep, v = s.partition("=")
        if not k.strip():
            raise UsageError(f'invalid key-value pair "{s}": empty key (--build-arg wants KEY[=VALUE])')
        if not sep:
            if k in os.environ:
                out[k] = os.environ[k]
            continue  # docker: KEY without a value and not in the environment is ignored
        out[k] = v
    return out


def _ignore(ctx_dir: Path, df_path: Path | None) -> tuple[str, list[str]]:
    from builder.context import BuildContext, read_ignore_patterns

    f = BuildContext.ignore_file_for(ctx_dir, df_path.resolve() if df_path else None)
    text = f.read_text() if f else ""
    return text, read_ignore_patterns(text) if f else []


def _memo_fields(args, ctx_dir: Path, text: str, name: str, df_path: Path | None, tmp_ctx) -> dict | None:
    """What the no-op memo fingerprints; None when this build must not use or write one."""
    if tmp_ctx or args.no_cache or args.no_cache_filter or args.pull or args.cache_from or args.cache_to \
            or getattr(args, "push", False):  # a push must happen even when nothing changed
        return None
    build_args = _build_args(args.build_arg)
    return {"dockerfile": text, "name": name, "path": str(df_path.resolve()) if df_path else None,
            "context": str(ctx_dir), "ignore": _ignore(ctx_dir, df_path)[0], "build_args": build_args,
            "target": args.target, "platform": args.platform, "labels": sorted(args.label),
            "network": args.network, "sde": build_args.get("SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH"),
            "secrets": sorted(_kv(x).get("id", "") for x in args.secret), "ssh": sorted(args.ssh),
            "tags": sorted(args.tag), "allow": sorted(set(args.allow))}


def request_from_args(args):
    """(settings, BuildRequest, cleanup) from parsed build flags."""
    from builder import settings as settings_mod

    st = settings_mod.load()
    ctx_dir, text, name, df_path, tmp_ctx = read_inputs(args, st)

    def cleanup() -> None:
        if tmp_ctx:
            fstree.rmtree(tmp_ctx, ignore_errors=True)
    try:
        req = _request(args, ctx_dir, text, name, df_path)
        req.memo_fields = _memo_fields(args, ctx_dir, text, name, df_path, tmp_ctx)
        return st, req, cleanup
    except BaseException:
        cleanup()
        raise


def _fast_noop(args) -> bool:
    """A provably all-CACHED rebuild, answered from the memo without parsing (see engine/memo.py)."""
    if args.output or args.check:
        return False
    _pids_limit(args.pids_limit)  # bad values are usage errors, memo or not
    _memory(args.memory)
    from builder import settings as settings_mod
    from builder.engine import memo
    from builder.report import make_reporter

    st = settings_mod.load()
    if args.context == "-" or args.file == "-" or not os.path.isdir(args.context):
        return False
    ctx_dir = Path(args.context).resolve()
    df_path = Path(args.file) if args.file else ctx_dir / "Dockerfile"
    if args.file and not df_path.is_absolute() and not df_path.exists() and (ctx_dir / args.file).exists():
        df_path = ctx_dir / args.file
    try:
        text = df_path.read_text()
    except (OSError, ValueError):
        return False  # the full path reports it properly
    fields = _memo_fields(args, ctx_dir, text, df_path.name, df_path, None)
    if fields is None:
        return False
    reporter = make_reporter("quiet" if args.quiet else args.progress, sys.stderr)
    from builder.oci.reference import full_names

    m = memo.try_noop(st, memo.fingerprint(fields), ctx_dir, _ignore(ctx_dir, df_path)[1], reporter,
                      tags=full_names(args.tag))
    if m is None:
        if hasattr(reporter, "discard"):
            reporter.discard()  # the full build makes its own: this one leaves no frame behind
        return False
    _finish(args, m["config_digest"], m["manifest"], [t for t in args.tag])
    return True


def _finish(args, config_digest: str, manifest: dict, tags: list[str]) -> None:
    if args.iidfile:
        Path(args.iidfile).write_text(config_digest)
    if args.metadata_file:
        meta = {"containerimage.digest": manifest["digest"], "containerimage.config.digest": config_digest,
                "containerimage.descriptor": manifest}
        if tags:
            meta["image.name"] = ",".join(tags)
        Path(args.metadata_file).write_text(json.dumps(meta, indent=2))
    if args.quiet:
        print(config_digest)


def run(args: argparse.Namespace) -> int:
    _build_args(args.build_arg)  # malformed --build-arg: a usage error before any work
    _platforms(args)  # a bad --platform is a usage error before anything is read
    if args.check:
        from builder import settings as settings_mod

        ctx_dir, text, name, _p, tmp = read_inputs(args, settings_mod.load())
        if tmp:
            fstree.rmtree(tmp, ignore_errors=True)
        return _check(text, name)
    from builder.commands.outputs import parse_outputs

    args.outputs = parse_outputs(args.output)  # a bad -o is an error before any work
    if _fast_noop(args):
        return 0
    import signal

    def _terminate(signum, frame):  # SIGTERM stops a build like Ctrl-C: sandboxes killed, temp removed
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _terminate)
    st, req, cleanup = request_from_args(args)
    try:
        return _build(args, st, req)
    finally:
        cleanup()


def _check(text: str, name: str) -> int:
    from builder.dockerfile import parse_dockerfile
    from builder.dockerfile.lint import lint

    df = parse_dockerfile(text, name)
    warnings = list(lint(df)) if callable(lint) else []
    for w in warnings:
        sys.stderr.write(f"{getattr(w, 'render', lambda: str(w))()}\n")
    sys.stderr.write(f"check complete, {len(warnings)} warning{'s' if len(warnings) != 1 else ''} found\n")
    return 1 if warnings else 0


def _request(args, ctx_dir: Path, text: str, name: str, df_path: Path | None):
    from builder.engine.build import BuildRequest
    from builder.errors import UsageError

    labels = {}
    for lab in args.label:
        k, sep, v = lab.partition("=")
        labels[k] = v
    from builder.errors import InvalidReference
    from builder.oci.reference import parse_reference

    for t in args.tag:
        try:
            parse_reference(t)
        except InvalidReference as e:
            raise UsageError(f"invalid tag {t!r}: {e.message}") from None
    build_args = _build_args(args.build_arg)
    sde_s = build_args.get("SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH")
    try:
        sde = int(sde_s) if sde_s else None
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be an integer, not {sde_s!r}") from None
    req = BuildRequest(
        context_dir=ctx_dir, dockerfile_text=text, dockerfile_name=name,
        dockerfile_path=df_path.resolve() if df_path else None, tags=tuple(args.tag), build_args=build_args,
        target=args.target, no_cache=args.no_cache, no_cache_filter=tuple(args.no_cache_filter), pull=args.pull,
        platform=_platforms(args)[0], labels=labels, secrets=_secrets(args.secret), ssh=_ssh(args.ssh),
        network=args.network, cache_from=tuple(_cache_dir(_cache_from_spec(c), "src", "--cache-from")
                                               for c in args.cache_from),
        cache_to=_cache_dir(args.cache_to, "dest", "--cache-to") if args.cache_to and not _inline(args) else None,
        inline_cache=_inline(args),
        source_date_epoch=sde, max_workers=max(1, args.jobs), pids_limit=_pids_limit(args.pids_limit),
        memory_bytes=_memory(args.memory), allow=_allow(args.allow))
    return req


ENTITLEMENTS = ("security.insecure", "network.host")


def _allow(values: list[str]) -> tuple[str, ...]:
    from builder.errors import UsageError

    out = []
    for v in values:
        for e in v.split(","):
            e = e.strip()
            if e not in ENTITLEMENTS:
                raise UsageError(f"invalid --allow {e!r}: the entitlements are {', '.join(ENTITLEMENTS)}")
            out.append(e)
    return tuple(sorted(set(out)))


def _platforms(args) -> tuple[str, ...]:
    from builder import platforms

    return platforms.parse_list(args.platform) if args.platform else (platforms.host(),)


def _pids_limit(n: int | None) -> int | None:
    from builder.errors import UsageError

    if n is not None and (n == 0 or n < -1):
        raise UsageError(f"--pids-limit must be a positive number or -1 (no limit), not {n}")
    return n


def _memory(text: str | None) -> int | None:
    from builder.containers.spec import parse_bytes
    from builder.errors import UsageError

    if text is None:
        return None
    n = parse_bytes(text, "--memory")
    if n < 6 << 20:
        raise UsageError("--memory: the minimum is 6m")
    return n


def _build(args, st, req) -> int:
    from builder.engine.build import build
    from builder.errors import UsageError
    from builder.report import make_reporter

    from builder.commands.outputs import parse_outputs, write_output

    outputs = getattr(args, "outputs", None)
    if outputs is None:
        outputs = parse_outputs(args.output)
    for o in outputs:
        if o["type"] == "image" and o.get("name"):
            req.tags = req.tags + tuple(n for n in o["name"].split(",") if n)
        if (o["type"] == "registry" or o.get("push") == "true") and not (o.get("name") or args.tag):
            raise UsageError(f"--output type={o['type']}: pushing needs a name (name=REGISTRY/REPO:TAG or -t)")
    reporter = make_reporter("quiet" if args.quiet else args.progress, sys.stderr)
    from builder.commands.registry import configure_from_settings  # FROM pulls honour insecure/mirrors

    configure_from_settings()
    plats = _platforms(args)
    if len(plats) > 1:
        for o in outputs:
            if o.get("type") in ("docker", "local", "tar"):
                raise UsageError(f"--output type={o.get('type')} takes one platform; "
                                 f"use type=oci or type=image for {len(plats)} platforms")
        from builder.engine.multiplatform import build_multi

        res = build_multi(req, plats, st, reporter, max_parallel=max(1, min(args.jobs, os.cpu_count() or 1)))
    else:
        res = build(req, st, reporter)
    for o in outputs:
        write_output(o, res, st, req.tags)
    if args.push or args.cache_to or any(o.get("type") in ("registry", "image") for o in outputs):
        from builder.commands.registry import after_build  # registry cache export, --push

        after_build(args, res, outputs)
    _finish(args, res.config_digest, res.manifest.to_dict(), list(req.tags))
    return 0
