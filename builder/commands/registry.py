"""`pybuild pull`, `push`, `login`, `logout`: the registry subcommands.

Owns: their flags, reading settings (insecure registries) for builder.registry, turning
per-blob BlobProgress into reporter events (`progress_adapter`, also for `build --push`), and
what the user sees on stdout (the reference and digest). Must not: hold transfer logic
(builder.registry.transfer does) or catch errors (cli.main is the one catch site).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Callable


def add_parser(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ca-cert", metavar="FILE", help="trust this CA certificate (PEM) for the registry")
    common.add_argument("--progress", choices=["auto", "tty", "plain", "json", "quiet"], default="auto",
                        help="progress output on stderr (default: auto)")
    common.add_argument("-j", "--jobs", type=int, default=3, help="blobs transferred in parallel (default 3)")

    p = sub.add_parser("pull", parents=[common], help="download an image from a registry")
    p.add_argument("image", help="reference, e.g. alpine:3.19 or localhost:5000/app@sha256:…")
    p.add_argument("--platform", default=None,
                   help="os/arch[/variant][,…] to keep from an index (default: this machine's)")
    p.add_argument("-a", "--all-platforms", action="store_true", help="keep every platform of an index")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the reference")
    p.set_defaults(registry_verb="pull")

    p = sub.add_parser("push", parents=[common], help="upload a local image to a registry")
    p.add_argument("image", help="local image (reference, digest or id)")
    p.add_argument("destinations", nargs="*", metavar="DEST",
                   help="remote references (default: the local reference itself)")
    p.add_argument("--chunk-size", metavar="BYTES", type=_size, default=None,
                   help="upload in PATCH chunks of this size (e.g. 16M) instead of one PUT")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the digest")
    p.add_argument("--compression", choices=["gzip", "zstd", "uncompressed"], default=None,
                   help="layer compression to push (default: the configured one, gzip); layers stored "
                        "otherwise are converted")
    p.add_argument("--force-compression", action="store_true",
                   help="re-compress layers even when they already use that compression")
    p.set_defaults(registry_verb="push")

    p = sub.add_parser("login", help="save credentials for a registry (in docker's config.json format)")
    p.add_argument("server", nargs="?", default="docker.io", help="registry host[:port] (default docker.io)")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password", help="password (prefer --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--ca-cert", metavar="FILE")
    p.set_defaults(registry_verb="login")

    p = sub.add_parser("logout", help="forget the credentials for a registry")
    p.add_argument("server", nargs="?", default="docker.io")
    p.set_defaults(registry_verb="logout")


def _size(text: str) -> int:
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*", text.lower())
    n = int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]) if m else 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 5M, 1048576)")
    return n


def run(args: argparse.Namespace) -> int:
    return {"pull": _pull, "push": _push, "login": _login, "logout": _logout}[args.registry_verb](args)


def _options(args: argparse.Namespace, **extra):
    from builder import settings
    from builder.registry.transfer import Options

    s = settings.load()
    ca = getattr(args, "ca_cert", None)
    if ca and not os.path.isfile(ca):
        from builder.errors import UsageError

        raise UsageError(f"--ca-cert {ca}: no such file")
    return Options(ca_cert=ca, insecure_registries=s.insecure_registries, jobs=max(1, getattr(args, "jobs", 3)),
                   mirrors=dict(s.mirrors), **extra)


def configure_from_settings() -> None:
    """Registry defaults for library calls made on our behalf (the engine's FROM pulls)."""
    from builder import settings
    from builder.registry.transfer import configure

    s = settings.load()
    configure(insecure_registries=s.insecure_registries, mirrors=dict(s.mirrors))


def _store():
    from builder import settings
    from builder.oci.layout import ImageStore

    return ImageStore(settings.load().store_dir)


def progress_adapter(reporter, verb: str) -> Callable:
    """BlobProgress → reporter events: one step per blob, progress at most ~4 times a second."""
    from builder.report import StepCached, StepFinished, StepProgress, StepStarted

    lock = threading.Lock()
    ids: dict[str, int] = {}
    started: dict[str, float] = {}
    last: dict[str, float] = {}

    def on(ev) -> None:
        short = ev.digest.split(":")[-1][:12]
        with lock:
            if ev.digest not in ids:
                ids[ev.digest] = len(ids) + 1
                started[ev.digest] = time.monotonic()
                if ev.status in ("exists", "mounted"):
                    word = "already exists" if ev.status == "exists" else "mounted from another repository"
                    reporter.emit(StepCached(ids[ev.digest], f"{verb} {short} ({word})"))
                    return
                reporter.emit(StepStarted(ids[ev.digest], f"{verb} {short} {_human(ev.total)}"))
            sid = ids[ev.digest]
            now = time.monotonic()
            if ev.status == "done":
                reporter.emit(StepFinished(sid, now - started[ev.digest]))
            elif ev.status in ("downloading", "uploading") and now - last.get(ev.digest, 0) > 0.25:
                last[ev.digest] = now
                reporter.emit(StepProgress(sid, f"{_human(ev.done)} / {_human(ev.total)}", ev.done, ev.total))
    return on


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return str(n)


def _reporter(args):
    from builder.report import make_reporter

    mode = "quiet" if getattr(args, "quiet", False) else args.progress
    return make_reporter(mode, sys.stderr)


def _finish(reporter, t0: float, image: str | None, error: str | None = None) -> None:
    from builder.report import BuildFinished

    reporter.emit(BuildFinished(time.monotonic() - t0, image=image, error=error))


def _pull(args) -> int:
    from builder.oci.reference import parse_reference
    from builder.registry.transfer import pull

    ref = parse_reference(args.image)
    reporter = _reporter(args)
    t0 = time.monotonic()
    try:
        from builder import platforms

        plats = platforms.parse_list(args.platform) if args.platform else (platforms.host(),)
        desc = pull(str(ref), _store(), progress=progress_adapter(reporter, "pull"), platform=",".join(plats),
                    options=_options(args), all_platforms=args.all_platforms)
    except BaseException as e:
        _finish(reporter, t0, None, str(e) or type(e).__name__)
        raise
    _finish(reporter, t0, None)
    if args.quiet:
        print(ref.familiar())
    else:
        from builder.errors import PybuildError

        try:  # an index is kept under the name: report its digest (what `docker pull` prints)
            desc = _store().resolve(str(ref))
        except PybuildError:
            pass  # the manifest digest is still right to print
        print(f"{ref.familiar()}: pulled {desc.digest}")
    return 0


def _push(args) -> int:
    from builder.oci.reference import parse_reference
    from builder.registry.transfer import push

    dests = args.destinations or [args.image]
    for d in dests:
        parse_reference(d)  # fail on a bad name before any upload
    store = _store()
    src = for_push(store, store.resolve(args.image), args.compression, args.force_compression)
    reporter = _reporter(args)
    t0 = time.monotonic()
    try:
        desc = push(store, src, dests, progress=progress_adapter(reporter, "push"),
                    options=_options(args, chunk_size=args.chunk_size))
    except BaseException as e:
        _finish(reporter, t0, None, str(e) or type(e).__name__)
        raise
    _finish(reporter, t0, None)
    if args.quiet:
        print(desc.digest)
    else:
        for d in dests:
            print(f"{parse_reference(d).familiar()}: digest: {desc.digest} size: {desc.size}")
    return 0


def for_push(store, desc, compression: str | None = None, force: bool = False):
    """The image to push: its layers in `compression` (default: the configured one, gzip — what
    BuildKit pushes and every client pulls), converted where stored otherwise. An index (a pulled
    multi-platform image) goes as it is."""
    from builder import settings
    from builder.oci import mediatypes as mt
    from builder.layers.convert import COMPRESSIONS, convert_image

    if not mt.is_manifest(desc.media_type):
        return desc
    st = settings.load()
    comp = COMPRESSIONS[compression] if compression else st.compression
    return convert_image(store.blobs, desc, compression=comp, force=force, oci_mediatypes=True if comp == "zstd" else None,
                         memo_dir=st.cache_dir / "convert", tmp_dir=st.tmp_dir)


def _server(text: str) -> str:
    """`https://host:5000/v2/` or `host:5000` → `host:5000` (docker accepts both)."""
    import re

    from builder.errors import UsageError

    host = re.sub(r"^[a-z]+://", "", text.strip()).split("/", 1)[0]
    if not host:
        raise UsageError(f"invalid registry {text!r}")
    if host in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        host = "docker.io"
    return host


def _login(args) -> int:
    from builder.errors import UsageError
    from builder.registry import auth
    from builder.registry.client import RegistryClient

    server = _server(args.server)
    user, password = args.username, args.password
    if args.password_stdin:
        if password:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        if not user:
            raise UsageError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
    if not user:
        if not sys.stdin.isatty():
            raise UsageError("login needs --username (and --password-stdin) when stdin is not a terminal")
        user = input("Username: ").strip()
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError("login needs --password-stdin (or -p) when stdin is not a terminal")
        import getpass

        password = getpass.getpass("Password: ")
    if not user or not password:
        raise UsageError("login needs a username and a password")
    if args.password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n")
    creds = auth.Credentials(user, password)
    from builder import settings

    client = RegistryClient(server, credentials=creds, ca_cert=args.ca_cert,
                            insecure_registries=settings.load().insecure_registries)
    client.ping()  # refuses wrong credentials before anything is saved
    where = auth.store(server, creds)
    print(f"Login Succeeded ({server}, saved in {where})")
    return 0


def _logout(args) -> int:
    from builder.registry import auth

    server = _server(args.server)
    if auth.erase(server):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
    return 0


# --- `pybuild build` integration (the code lives in commands/registry_build.py) ---------------

def registry_cache_dir(spec: str, key: str, flag: str):
    """--cache-from/--cache-to type=registry → a local cache dir for the engine (see registry_build)."""
    from builder.commands.registry_build import registry_cache_dir as impl

    return impl(spec, key, flag)


def after_build(args, res, outputs: list[dict]) -> None:
    """Push pending registry cache exports, then the image where asked (see registry_build)."""
    from builder.commands.registry_build import after_build as impl

    impl(args, res, outputs)
