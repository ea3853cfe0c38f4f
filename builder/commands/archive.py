"""`pybuild save | load | import | export`: images to and from files.

Owns: the command-line face of builder.oci.archive and builder.layers.rootfs — save
(docker-archive by default, or an OCI tar / OCI layout directory), load (any of those, from a
file or stdin), import (a rootfs tarball → a one-layer image, like `docker import`), export
(an image's flattened root filesystem as a tar or a directory). Must not: hold format logic.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from builder.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("save", help="save images to a docker-archive or OCI archive")
    p.add_argument("-o", "--output", help="write to this file (or directory for --format oci-dir); default stdout")
    p.add_argument("--format", choices=["docker-archive", "oci", "oci-dir"], default="docker-archive",
                   help="docker-archive (docker load), oci (OCI layout tar) or oci-dir (OCI layout directory)")
    p.add_argument("--platform", help="docker-archive: the image of this platform from a multi-platform image "
                                      "(default: this machine's; oci formats keep every platform)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_save)

    p = sub.add_parser("load", help="load images from a docker-archive, OCI tar or OCI layout directory")
    p.add_argument("-i", "--input", help="read this file or directory (default: stdin)")
    p.add_argument("-t", "--tag", help="name the loaded image (archives holding one image only)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("import", help="create a one-layer image from a rootfs tarball")
    p.add_argument("file", metavar="FILE", help="tar, tar.gz or tar.zst; - for stdin")
    p.add_argument("reference", nargs="?", metavar="NAME[:TAG]")
    p.add_argument("-m", "--message", help="history comment")
    p.add_argument("--platform", help="os/arch[/variant] to record (default: this machine)")
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="apply a Dockerfile instruction to the image config, as `docker import --change` "
                        "(CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, "
                        "VOLUME, WORKDIR; repeatable)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="write an image's flattened root filesystem as a tar (or a directory)")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("-o", "--output", help="file (default stdout), or a directory with --format dir")
    p.add_argument("--format", choices=["tar", "dir"], default="tar")
    p.set_defaults(func=cmd_export)


def run(args: argparse.Namespace) -> int:
    return args.func(args)


def _store():
    from builder import settings
    from builder.oci.layout import ImageStore

    return ImageStore(settings.load().store_dir)


def _stdout_for_binary():
    if sys.stdout.isatty():
        raise UsageError("refusing to write an archive to a terminal; use -o FILE or redirect stdout")
    sys.stdout.flush()
    return sys.stdout.buffer


def _write_file(path: str, write) -> None:
    """Write through a temp file beside `path`, renamed on success: no half archives left."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.pybuild-tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cmd_save(args) -> int:
    from builder.oci.archive import save_docker_archive, save_oci

    store = _store()
    for ref in args.images:
        store.resolve(ref)  # fail before writing anything
    if args.format == "oci-dir":
        if not args.output:
            raise UsageError("--format oci-dir needs -o DIRECTORY")
        save_oci(store, args.images, Path(args.output))
        return 0
    if args.format == "oci":
        def write(f): save_oci(store, args.images, f)
    else:
        plat = None
        if args.platform:
            from builder import platforms
            from builder.engine.multiplatform import to_platform

            plat = to_platform(platforms.normalize(args.platform))

        def write(f): save_docker_archive(store, args.images, f, plat)
    if args.output and args.output != "-":
        _write_file(args.output, write)
    else:
        write(_stdout_for_binary())
    return 0


def _compression() -> str:
    from builder import settings

    return settings.load().compression


def cmd_load(args) -> int:
    from builder.oci.archive import load_archive

    store = _store()
    if args.input and args.input != "-":
        if not os.path.exists(args.input):
            raise UsageError(f"no such file or directory: {args.input}")
        loaded = load_archive(store, Path(args.input), tag=args.tag, compression=_compression())
    else:
        if sys.stdin.isatty():
            raise UsageError("no input: use -i FILE or pipe an archive to stdin")
        loaded = load_archive(store, sys.stdin.buffer, tag=args.tag, compression=_compression())
    if not args.quiet:
        from builder.errors import InvalidReference
        from builder.oci.reference import parse_reference

        for ref, desc in loaded:
            if ref:
                try:
                    ref = parse_reference(ref).familiar()  # as docker prints it
                except InvalidReference:
                    pass
            print(f"Loaded image: {ref}" if ref else f"Loaded image ID: {desc.digest}")
    return 0


def _platform(s: str | None):
    if not s:
        return None
    from builder.oci.model import Platform

    parts = s.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"--platform {s!r}: expected os/arch[/variant]")
    return Platform(architecture=parts[1], os=parts[0], variant=parts[2] if len(parts) == 3 else None)


CHANGE_COMMANDS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
                   "VOLUME", "WORKDIR")  # what `docker import --change` takes


def changes_config(changes: list[str]):
    """The ContainerConfig that `docker import --change` gives: each change read as a Dockerfile
    instruction (same quoting, JSON and shell forms, ENV/LABEL pairs, relative WORKDIR) applied in
    order to an empty config (no PATH is added, as docker adds none)."""
    from builder.dockerfile import parse_dockerfile
    from builder.engine.imageconfig import apply_config
    from builder.errors import DockerfileError
    from builder.oci.config import ContainerConfig, ImageConfig
    from builder.plan.graph import ConfigOp
    from builder.plan.planner import plan

    cfg = ImageConfig(architecture="", os="", config=ContainerConfig())
    cmd_set = False
    for ch in changes:
        kw = ch.strip().split(None, 1)[0].upper() if ch.strip() else ""
        if kw not in CHANGE_COMMANDS:
            raise UsageError(f"--change {ch!r}: {kw or 'an empty change'} is not a valid change command "
                             f"(one of {', '.join(CHANGE_COMMANDS)})")
        try:
            graph = plan(parse_dockerfile(f"FROM scratch\n{ch}\n", "--change"))
        except DockerfileError as e:
            raise UsageError(f"--change {ch!r}: {e.message}") from None
        for step in graph.stages[0].steps[1:]:
            if isinstance(step.op, ConfigOp):
                cfg, cmd_set = apply_config(cfg, step.op, cmd_set)
    return cfg.config


def cmd_import(args) -> int:
    from builder.layers.rootfs import import_rootfs
    from builder.oci.image import Image

    config = changes_config(args.change) if args.change else None  # errors before reading the input
    store = _store()
    plat = _platform(args.platform)
    if args.file == "-":
        desc = import_rootfs(store, sys.stdin.buffer, args.reference, platform=plat, message=args.message,
                             compression=_compression(), config=config)
    else:
        if not os.path.isfile(args.file):
            raise UsageError(f"no such file: {args.file}")
        desc = import_rootfs(store, Path(args.file), args.reference, platform=plat, message=args.message,
                             compression=_compression(), config=config)
    print(Image.load(store.blobs, desc).id)
    return 0


def cmd_export(args) -> int:
    from builder.layers.rootfs import export_rootfs

    store = _store()
    store.resolve(args.image)
    if args.format == "dir":
        if not args.output:
            raise UsageError("--format dir needs -o DIRECTORY")
        export_rootfs(store, args.image, Path(args.output))
    elif args.output and args.output != "-":
        _write_file(args.output, lambda f: export_rootfs(store, args.image, f))
    else:
        export_rootfs(store, args.image, _stdout_for_binary())
    return 0
