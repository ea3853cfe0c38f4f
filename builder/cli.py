"""The `pybuild` command line.

Owns: the subcommand table, global flags, and the single place where exceptions become
messages and exit codes (0 ok, 1 PybuildError, 2 usage, 3 internal bug, 130 interrupted).
Each subcommand lives in `builder.commands.<module>` exposing `add_parser(sub)` and
`run(args) -> int`; only the module for the command being run is imported, so start-up
stays small. Must not: hold build logic (that is the engine's) or import heavy libraries
(rich, lark, zstandard, yaml) at module level.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# argparse's messages go through gettext, whose first lookup imports `locale` (~1 ms of every
# command's start-up: its 1,000-entry alias table) only to find no catalogue: Python ships
# none for argparse, and pybuild's messages are English anyway.
argparse._ = str  # type: ignore[attr-defined]
argparse.ngettext = lambda singular, plural, n: singular if n == 1 else plural  # type: ignore[attr-defined]

# command name -> (module under builder.commands, one-line summary). Several commands may share
# a module. The summaries serve `pybuild --help` without importing every command module
# (start-up budget); tests/unit/test_cli_basics.py holds them equal to the modules' own.
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("build", "build an image from a Dockerfile"),
    "parse": ("parse", "parse a Dockerfile and print its instructions"),
    "lint": ("lint", "check a Dockerfile for common mistakes"),
    "images": ("images", "list images in the local store"),
    "tag": ("images", "give an image another name"),
    "rmi": ("images", "remove image names (blobs go at the next prune)"),
    "inspect": ("images", "show image details as JSON (like docker image inspect)"),
    "history": ("images", "show the history of an image"),
    "save": ("archive", "save images to a docker-archive or OCI archive"),
    "load": ("archive", "load images from a docker-archive, OCI tar or OCI layout directory"),
    "import": ("archive", "create a one-layer image from a rootfs tarball"),
    "export": ("archive", "write an image's flattened root filesystem as a tar (or a directory)"),
    "prune": ("store", "remove blobs and snapshots no image or cache record uses"),
    "store": ("store", "local store maintenance"),
    "cache": ("cache", "inspect, prune or explain the build cache"),
    "run": ("run", "run a command in a new container from an image"),
    "bundle": ("run", "write an image as an OCI runtime bundle (config.json + rootfs) for runc/crun"),
    "ps": ("containers", "list containers"),
    "logs": ("containers", "show a container's output"),
    "stop": ("containers", "stop running containers (stop signal, then SIGKILL)"),
    "kill": ("containers", "send a signal to running containers"),
    "rm": ("containers", "remove containers"),
    "wait": ("containers", "wait for containers to stop and print their exit codes"),
    "start": ("containers", "start stopped containers"),
    "restart": ("containers", "restart containers"),
    "rename": ("containers", "rename a container"),
    "exec": ("containers", "run a command in a running container"),
    "top": ("containers", "show the processes of a running container"),
    "port": ("containers", "list a container's published ports"),
    "container": ("containers", "manage containers (ls, inspect, prune, and the commands above)"),
    "network": ("networks", "manage networks (create, ls, rm, inspect, prune)"),
    "volume": ("volumes", "manage volumes (create, ls, rm, inspect, prune)"),
    "pull": ("registry", "download an image from a registry"),
    "push": ("registry", "upload a local image to a registry"),
    "login": ("registry", "save credentials for a registry (in docker's config.json format)"),
    "logout": ("registry", "forget the credentials for a registry"),
    "setup": ("setup", "host set-up: register QEMU emulation for foreign platforms"),
    "manifest": ("manifest", "create, add to, inspect and push multi-platform image indexes"),
    "version": ("version", "show version information"),
    "system": ("system", "show disk usage and information, or prune everything unused"),
    "builder": ("system", "manage the build cache (docker builder prune)"),
    "completion": ("completion", "print a shell completion script (bash, zsh or fish)"),
}

# docker's management-command spellings: `pybuild image ls` is `pybuild images`, and so on.
# Each group word + verb is rewritten to the command above before parsing, so the flags, help
# and completion of a verb are those of its command (one parser table). A group word that is a
# command itself (`container`: ls, inspect, prune, …) keeps its own verbs; only those named
# here are rewritten (`container run` is `run`).
GROUPS: dict[str, tuple[str, dict[str, str]]] = {
    "image": ("manage images (image ls, rm, inspect, history, tag, prune, …)", {
        "ls": "images", "list": "images", "rm": "rmi", "remove": "rmi", "inspect": "inspect",
        "history": "history", "tag": "tag", "prune": "prune", "save": "save", "load": "load",
        "import": "import", "push": "push", "pull": "pull", "build": "build"}),
    "container": ("manage containers (container run)", {"run": "run"}),
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (no usage dump) on bad usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"pybuild: error: {message}\n")
        sys.exit(2)

    def _check_value(self, action, value):  # noqa: ANN001
        # One wording on every Python: 3.13 (and 3.12.8+) print the choices unquoted, 3.11 and
        # 3.14 quoted; the quoted form is the one tests/errors pins.
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {choices})")


def _module(name: str):
    return importlib.import_module(f"builder.commands.{COMMANDS[name][0]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="pybuild", description="Daemonless OCI image builder.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for internal errors")
    parser.add_argument("--root", help="state directory (default: $PYBUILD_ROOT or /var/lib/pybuild)")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="_subcommand", metavar="COMMAND", parser_class=_Parser)
    if only is None:
        # Top-level help or no command: names and summaries only, no command module imported.
        for name, (_mod, summary) in COMMANDS.items():
            sub.add_parser(name, help=summary, add_help=False)
        for name, (summary, _verbs) in GROUPS.items():
            if name not in COMMANDS:
                sub.add_parser(name, help=summary, add_help=False)
        return parser
    mod = COMMANDS[only][0]
    add = importlib.import_module(f"builder.commands.{mod}").add_parser
    if "only" in add.__code__.co_varnames[:add.__code__.co_argcount]:
        add(sub, only=only)  # a module serving many commands builds just the one asked for
    else:
        add(sub)
    return parser


def _command_index(argv: list[str]) -> int | None:
    """Where the subcommand word is in argv (after global flags), or None."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--root":
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return i
    return None


def _pre_scan(argv: list[str]) -> str | None:
    """The subcommand name in argv (skipping global flags), to import only its module."""
    i = _command_index(argv)
    return argv[i] if i is not None and argv[i] in COMMANDS else None


def _expand_group(argv: list[str]) -> list[str] | int:
    """`image ls …` → `images …`; a group alone or with --help prints its verbs (exit 0/2)."""
    i = _command_index(argv)
    if i is None or argv[i] not in GROUPS:
        return argv
    group = argv[i]
    summary, verbs = GROUPS[group]
    rest = argv[i + 1:]
    if rest and rest[0] in verbs:
        return argv[:i] + [verbs[rest[0]]] + rest[1:]
    if group in COMMANDS:
        return argv  # the command's own verbs, flags and help
    if rest and not rest[0].startswith("-"):
        sys.stderr.write(f"pybuild: error: unknown command 'pybuild {group} {rest[0]}' "
                         f"(choose from {', '.join(verbs)})\n")
        return 2
    out = sys.stdout if rest[:1] in (["-h"], ["--help"]) else sys.stderr
    out.write(f"usage: pybuild {group} COMMAND\n\n{summary}\n\ncommands:\n")
    for verb, target in verbs.items():
        out.write(f"  {verb:<10} {COMMANDS[target][1]}\n")
    return 0 if out is sys.stdout else 2


# Set by _dispatch when the command's parser says `fast_exit=True` (run): the command has
# closed, flushed and removed everything it made, so main() may end with os._exit and skip
# the interpreter's teardown (module and GC finalisation: ~5 ms of a 60 ms budget).
_fast_exit = False


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None  # called in-process with an argv: never os._exit the caller
    argv = sys.argv[1:] if argv is None else argv
    if as_program:
        _prefork_sandbox(argv)
    debug = "--debug" in argv or os.environ.get("PYBUILD_DEBUG") == "1"
    try:
        code = _dispatch(argv)
    except KeyboardInterrupt:
        sys.stderr.write("pybuild: interrupted\n")
        code = 130
    except BrokenPipeError:
        code = 1
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except BaseException as e:  # noqa: BLE001 - the one catch site
        code = _report(e, debug)
    sys.stdout.flush() if not sys.stdout.closed else None
    if _fast_exit and as_program:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(code)
    sys.exit(code)


def _prefork_sandbox(argv: list[str]) -> None:
    """`pybuild run` in the foreground, as root: the sandbox's fork server is forked from this
    process first thing, while it has one thread and little memory (runtime.zygote.prefork),
    rather than started as a second Python later: its set-up (cgroup join) then overlaps our
    imports. A guess from argv alone: a miss only costs the time it would save (`-d` runs the
    container from a monitor, which starts its own; a usage error leaves it to die with us)."""
    i = _command_index(argv)
    if i is None or argv[i] != "run" or os.geteuid() != 0:
        return
    rest = argv[i + 1:]
    for a, nxt in zip(rest, rest[1:] + [""]):
        # what takes builder.commands.run to a container with a monitor (run_container)
        if a.partition("=")[0] in ("--detach", "--publish", "--publish-all", "--restart", "--volumes-from",
                                   "--health-cmd", "-p", "-P") \
                or (a[:1] == "-" and a[1:2] != "-" and "d" in a and a[1:].isalpha() and len(a) <= 4):
            return
        if a in ("--network", "--net") and nxt not in ("host", "none") \
                or a.startswith(("--network=", "--net=")) and a.partition("=")[2] not in ("host", "none"):
            return
        if a in ("-v", "--volume") and not nxt.startswith(("/", ".")):
            return  # a named volume
    from runtime import zygote

    zygote.prefork()


def _dispatch(argv: list[str]) -> int:
    expanded = _expand_group(argv)
    if isinstance(expanded, int):
        return expanded
    argv = expanded
    name = _pre_scan(argv)
    parser = build_parser(only=name)
    args = parser.parse_args(argv)
    if args.version and not args._subcommand:
        from builder import __version__

        print(f"pybuild version {__version__}")
        return 0
    if args.root:
        os.environ["PYBUILD_ROOT"] = os.path.abspath(args.root)
    if not args._subcommand:
        parser.print_help()
        return 2
    global _fast_exit
    _fast_exit = bool(getattr(args, "fast_exit", False))
    if getattr(args, "command", None) is None:
        args.command = args._subcommand  # modules that serve several commands dispatch on it
    if os.geteuid() != 0:
        from builder import rootless

        if rootless.needed(args._subcommand):
            rootless.enter()  # returns as root of a user namespace of our own (or exits)
    return int(_module(args._subcommand).run(args) or 0)


def _report(e: BaseException, debug: bool) -> int:
    from builder.errors import PybuildError

    if isinstance(e, PybuildError):
        sys.stderr.write(e.render() + "\n")
        if debug:
            import traceback

            traceback.print_exception(e)
        return e.exit_code
    try:
        from runtime.errors import SandboxError
    except ImportError:  # runtime not built yet
        SandboxError = ()  # type: ignore[assignment]
    if SandboxError and isinstance(e, SandboxError):
        sys.stderr.write(f"error: {e}\n")
        return 1
    if isinstance(e, OSError) and e.filename:
        # An environment problem (permissions, disk full) rather than a bug.
        sys.stderr.write(f"error: {e.strerror}: {e.filename}\n")
        return 1
    sys.stderr.write(f"pybuild: internal error: {type(e).__name__}: {e}\n")
    if debug:
        import traceback

        traceback.print_exception(e)
    else:
        sys.stderr.write("(run with --debug for a traceback)\n")
    return 3


if __name__ == "__main__":
    main()
