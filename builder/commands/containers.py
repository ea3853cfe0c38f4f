"""Container commands: ps, logs, stop, kill, rm, wait, start, restart, rename, exec, top, port,
`container inspect|prune|ls`, and `run` of containers with a life of their own (`-d`, a
network, published ports, volumes).

Owns: flags, output formats (docker's table, `--format` templates, inspect JSON) and
choosing containers by name or id prefix. Must not: run containers (builder.containers'
monitor does) or keep state of its own.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

SUMMARY = {
    "ps": "list containers",
    "logs": "show a container's output",
    "stop": "stop running containers (stop signal, then SIGKILL)",
    "kill": "send a signal to running containers",
    "rm": "remove containers",
    "wait": "wait for containers to stop and print their exit codes",
    "start": "start stopped containers",
    "restart": "restart containers",
    "rename": "rename a container",
    "exec": "run a command in a running container",
    "top": "show the processes of a running container",
    "port": "list a container's published ports",
    "container": "manage containers (ls, inspect, prune, and the commands above)",
}


def add_parser(sub, only: str | None = None) -> None:
    """Every command of this module, or just `only` (argparse sub-parsers cost ~0.3 ms each,
    and `exec CONTAINER true` has a 60 ms budget)."""
    if only is None or only == "ps":
        _ps_flags(sub.add_parser("ps", help=SUMMARY["ps"]))
    if only not in (None, "container"):
        if only != "ps":
            _add(sub, only)
        return
    p = sub.add_parser("container", help=SUMMARY["container"])
    csub = p.add_subparsers(dest="container_command", metavar="COMMAND", required=True)
    _ps_flags(csub.add_parser("ls", aliases=["list", "ps"], help=SUMMARY["ps"]))
    q = csub.add_parser("inspect", help="show container details as JSON (like docker container inspect)")
    q.add_argument("-f", "--format", metavar="TEMPLATE")
    q.add_argument("containers", nargs="+", metavar="CONTAINER")
    q = csub.add_parser("prune", help="remove every stopped container")
    q.add_argument("-f", "--force", action="store_true", help="do not ask (pybuild never asks)")
    for name in ("logs", "stop", "kill", "rm", "wait", "start", "restart", "rename", "exec", "top", "port"):
        _add(csub, name)
    if only is None:
        for name in ("logs", "stop", "kill", "rm", "wait", "start", "restart", "rename", "exec", "top", "port"):
            _add(sub, name)


def _ps_flags(p) -> None:
    p.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    p.add_argument("-q", "--quiet", action="store_true", help="ids only")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="status=, name=, id=, ancestor=, label=, network=")
    p.add_argument("--format", metavar="TEMPLATE", help="Go-template-like: '{{.ID}} {{.Names}}', 'table …', 'json'")
    p.set_defaults(container_command="ps")


def _add(sub, name: str) -> None:
    p = sub.add_parser(name, help=SUMMARY[name])
    if name == "logs":
        p.add_argument("-f", "--follow", action="store_true")
        p.add_argument("-n", "--tail", metavar="N", default="all")
        p.add_argument("-t", "--timestamps", action="store_true")
        p.add_argument("--since", metavar="TIME")
        p.add_argument("container", metavar="CONTAINER")
    elif name in ("stop", "restart"):
        p.add_argument("-t", "--time", "--timeout", type=int, dest="time", metavar="SECONDS")
        p.add_argument("-s", "--signal", metavar="SIG")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
    elif name == "kill":
        p.add_argument("-s", "--signal", default="KILL", metavar="SIG")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
    elif name == "rm":
        p.add_argument("-f", "--force", action="store_true", help="kill it first if it runs")
        p.add_argument("-v", "--volumes", action="store_true", help="remove its anonymous volumes too")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
    elif name == "wait":
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
    elif name == "start":
        p.add_argument("-a", "--attach", action="store_true", help="follow its output and return its status")
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
    elif name == "rename":
        p.add_argument("container", metavar="CONTAINER")
        p.add_argument("new_name", metavar="NEW_NAME")
    elif name == "exec":
        p.add_argument("-i", "--interactive", action="store_true")
        p.add_argument("-t", "--tty", action="store_true")
        p.add_argument("-d", "--detach", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
        p.add_argument("--env-file", action="append", default=[], metavar="FILE")
        p.add_argument("-u", "--user", metavar="USER[:GROUP]")
        p.add_argument("-w", "--workdir", metavar="DIR")
        p.add_argument("--privileged", action="store_true", help=argparse.SUPPRESS)
        p.add_argument("container", metavar="CONTAINER")
        p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD")
        # cmd_exec leaves nothing open or buffered: cli.main may skip the interpreter's
        # teardown (several ms of a 60 ms budget), as for `run`
        p.set_defaults(fast_exit=True)
    elif name == "top":
        p.add_argument("container", metavar="CONTAINER")
        p.add_argument("ps_args", nargs=argparse.REMAINDER)
    elif name == "port":
        p.add_argument("container", metavar="CONTAINER")
        p.add_argument("port", nargs="?", metavar="PORT[/PROTO]")
    p.set_defaults(container_command=name)


def _root():
    from builder import settings as settings_mod
    return settings_mod.load().root


def run(args: argparse.Namespace) -> int:
    cmd = getattr(args, "container_command", None) or args.command
    return globals()[f"cmd_{cmd.replace('-', '_')}"](args)


def _find(ref: str):
    from builder.containers.state import find
    return find(_root(), ref)


def _each(refs: list[str], fn) -> int:
    """docker's way with several containers: go on after an error, exit 1 if any failed."""
    from builder.errors import PybuildError
    rc = 0
    for ref in refs:
        try:
            fn(_find(ref), ref)
        except PybuildError as e:
            sys.stderr.write(f"error: {e}\n")
            rc = 1
    return rc


# --- run ------------------------------------------------------------------------------------
def run_container(args) -> int:
    from builder.containers import lifecycle
    from builder.errors import UsageError

    if not args.detach and (args.interactive or args.tty):
        raise UsageError("-i/-t with a network, published ports or volumes needs -d for now "
                         "(start it detached and use `pybuild exec -it`)")
    auto_remove = args.rm
    if args.network is None and not args.detach:
        from builder.rootless import host_root
        if not host_root():
            from builder.networks.pasta import usable
            why = usable()
            if why and not (args.publish or args.publish_all):
                # as builder.networks.foreground does for the fast path
                sys.stderr.write(f"pybuild: warning: no private network for this container ({why}); it shares "
                                 "the host's network (--network host says so and silences this)\n")
                args.network = "host"
    if not args.detach:
        args.rm = False  # the CLI removes it itself, after it has read the last output
    if args.pull == "missing":
        from builder.containers.spec import pull_if_needed
        pull_if_needed(args)
    root = _root()
    c = lifecycle.create(args)
    try:
        lifecycle.start(c, root)
    except BaseException:
        if auto_remove:
            lifecycle.remove(c, root, force=True, volumes=True)
        raise
    if args.detach:
        print(c.id)
        return 0
    code = _attach(c)
    if auto_remove:
        lifecycle.remove(c, root, force=True, volumes=True)
    return code


def _attach(c) -> int:
    from builder.containers import lifecycle, logs

    path = c.path / logs.LOG_NAME
    if not path.exists():
        path.touch()
    for e in logs.follow(path, 0, c.monitor_alive):
        (sys.stdout if e.get("stream") == "stdout" else sys.stderr).write(e["log"])
        (sys.stdout if e.get("stream") == "stdout" else sys.stderr).flush()
    lifecycle.wait_monitor(c)
    return int(c.status().get("ExitCode") or 0) & 0xFF if c.status().get("ExitCode", 0) >= 0 else 255


# --- ps ---------------------------------------------------------------------------------------
def cmd_ps(args) -> int:
    from builder.containers import views
    from builder.containers.state import all_containers

    cs = [c for c in all_containers(_root()) if args.all or c.status().get("Status") in ("running", "restarting")]
    if args.filter:
        cs = [c for c in cs if views.matches(c, args.filter)]
    rows = [views.row(c, args.no_trunc) for c in cs]
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    from builder.gotemplate import format_rows

    sys.stdout.write(format_rows(args.format, rows, views.PS_HEADERS, views.PS_TABLE))
    return 0


def cmd_ls(args) -> int:
    return cmd_ps(args)


# --- logs -------------------------------------------------------------------------------------
def cmd_logs(args) -> int:
    from builder.containers import logs
    from builder.errors import UsageError

    c = _find(args.container)
    since = logs.parse_since(args.since) if args.since else None
    path = c.path / logs.LOG_NAME
    if args.tail != "all" and not str(args.tail).isdigit():
        raise UsageError(f"invalid --tail {args.tail!r}: a number or 'all'")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    cut = data.rfind(b"\n") + 1  # whole lines now; anything later is followed
    es = logs.parse(data[:cut], since)
    if args.tail != "all":
        n = int(args.tail)
        es = es[-n:] if n else []

    def emit(e: dict) -> None:
        out = sys.stdout if e.get("stream") == "stdout" else sys.stderr
        out.write((e["time"] + " " if args.timestamps else "") + e["log"])
        out.flush()
    for e in es:
        emit(e)
    if args.follow and path.exists():
        for e in logs.follow(path, cut, c.monitor_alive):
            if since is None or logs._time_of(e["time"]) >= since:
                emit(e)
    return 0


# --- stop/kill/rm/wait/start/restart/rename -----------------------------------------------------
def cmd_stop(args) -> int:
    from builder.containers import lifecycle
    sig = lifecycle.signal_number(args.signal) if args.signal else None
    return _each(args.containers, lambda c, ref: (lifecycle.stop(c, args.time, sig), print(ref)))


def cmd_kill(args) -> int:
    from builder.containers import lifecycle
    sig = lifecycle.signal_number(args.signal)
    return _each(args.containers, lambda c, ref: (lifecycle.kill(c, sig), print(ref)))


def cmd_rm(args) -> int:
    from builder.containers import lifecycle
    root = _root()
    return _each(args.containers, lambda c, ref: (lifecycle.remove(c, root, force=args.force, volumes=args.volumes),
                                                  print(ref)))


def cmd_wait(args) -> int:
    from builder.containers import lifecycle

    def one(c, _ref) -> None:
        lifecycle.wait_monitor(c)
        print(c.status().get("ExitCode", 0))
    return _each(args.containers, one)


def cmd_start(args) -> int:
    from builder.containers import lifecycle
    root = _root()
    if args.attach:
        if len(args.containers) != 1:
            from builder.errors import UsageError
            raise UsageError("start -a takes one container")
        c = _find(args.containers[0])
        offset = (c.path / "container.log").stat().st_size if (c.path / "container.log").exists() else 0
        lifecycle.start(c, root)
        from builder.containers import logs
        for e in logs.follow(c.path / logs.LOG_NAME, offset, c.monitor_alive):
            (sys.stdout if e.get("stream") == "stdout" else sys.stderr).write(e["log"])
        lifecycle.wait_monitor(c)
        return int(c.status().get("ExitCode") or 0) & 0xFF
    return _each(args.containers, lambda c, ref: (lifecycle.start(c, root), print(ref)))


def cmd_restart(args) -> int:
    from builder.containers import lifecycle
    root = _root()
    sig = lifecycle.signal_number(args.signal) if args.signal else None

    def one(c, ref) -> None:
        lifecycle.stop(c, args.time, sig)
        lifecycle.start(c, root)
        print(ref)
    return _each(args.containers, one)


def cmd_rename(args) -> int:
    from builder.containers.state import check_name, names_lock, write_json
    root = _root()
    c = _find(args.container)
    with names_lock(root):
        check_name(root, args.new_name)
        cfg = dict(c.config, Name=args.new_name)
        write_json(c.path / "config.json", cfg)
    return 0


def cmd_prune(args) -> int:
    from builder.containers import lifecycle
    from builder.containers.state import all_containers
    root = _root()
    n = 0
    for c in all_containers(root):
        if not c.monitor_alive() and c.status().get("Status") != "running":
            lifecycle.remove(c, root)
            print(c.id)
            n += 1
    print(f"Total reclaimed: {n} containers")
    return 0


# --- exec / top / port -------------------------------------------------------------------------
def cmd_exec(args) -> int:
    # kept lean: `exec CONTAINER true` has a 60 ms budget (builder.container and the layered
    # file view are imported only for -u, which needs the container's /etc/passwd)
    from builder.errors import PybuildError, UsageError
    from runtime.config import Process, SandboxConfig
    from runtime.enter import enter
    from runtime.errors import ExecError

    if not args.cmd:
        raise UsageError("exec needs a command")
    c = _find(args.container)
    pid = c.live_pid() if c.status().get("Status") == "running" else None
    if pid is None:
        raise PybuildError(f"container {c.name or c.id[:12]} is not running")
    sb = SandboxConfig.from_dict(c.config["Sandbox"])
    uid, gid, groups = sb.process.uid, sb.process.gid, sb.process.additional_gids
    overrides = []
    if args.env_file:
        from builder.container import read_env_file
        for f in args.env_file:
            overrides.extend(read_env_file(f))
    overrides.extend(args.env)
    env = dict(e.split("=", 1) for e in sb.process.env)
    if args.tty:
        env.setdefault("TERM", "xterm")
    for item in overrides:
        k, sep, v = item.partition("=")
        if not k:
            raise UsageError(f"invalid -e {item!r}")
        if sep:
            env[k] = v
        elif k in os.environ:
            env[k] = os.environ[k]
    if args.user is not None:
        from builder.container import resolve_user, user_home
        from builder.engine.fsview import LayeredFS
        view = LayeredFS([str(c.path / "upper"), *sb.rootfs.lowerdirs])
        uid, gid, groups = resolve_user(args.user, view.read_file)
        if not any(i.partition("=")[0] == "HOME" for i in overrides):
            env["HOME"] = user_home(args.user, view.read_file)
    cwd = args.workdir or sb.process.cwd
    if not cwd.startswith("/"):
        raise UsageError(f"exec -w {cwd!r}: the working directory must be absolute")
    if args.tty and args.interactive and not os.isatty(0):
        raise PybuildError("the input device is not a TTY (drop -t, or run from a terminal)")
    proc = Process(argv=tuple(args.cmd), env=tuple(f"{k}={v}" for k, v in env.items()), cwd=cwd, uid=uid, gid=gid,
                   additional_gids=groups, tty=args.tty)
    try:
        return enter(pid, sb, proc, stdin=0 if args.interactive else None)
    except ExecError as e:
        sys.stderr.write(f"error: {e}\n")
        return 126 if "permission denied" in str(e).lower() else 127


def cmd_top(args) -> int:
    from builder.errors import PybuildError
    c = _find(args.container)
    pid = c.live_pid()
    if pid is None:
        raise PybuildError(f"container {c.name or c.id[:12]} is not running")
    ns = os.stat(f"/proc/{pid}/ns/pid").st_ino
    import pwd
    rows = [("UID", "PID", "PPID", "CMD")]
    for d in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        try:
            if os.stat(f"/proc/{d}/ns/pid").st_ino != ns:
                continue
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
            ppid = stat[stat.rindex(b")") + 2:].split()[1].decode()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            uid = os.stat(f"/proc/{d}").st_uid
        except OSError:
            continue
        try:
            uname = pwd.getpwuid(uid).pw_name
        except KeyError:
            uname = str(uid)
        rows.append((uname, d, ppid, cmd))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("   ".join(v.ljust(w) for v, w in zip(r[:3], widths)) + "   " + r[3])
    return 0


def cmd_port(args) -> int:
    from builder.errors import PybuildError
    c = _find(args.container)
    st = c.status()
    ports = st.get("Ports") or [] if st.get("Status") == "running" else []
    want = None
    if args.port:
        num, _, proto = args.port.partition("/")
        want = (int(num), proto or "tcp")
    shown = 0
    for p in ports:
        if want and (p["ContainerPort"], p["Proto"]) != want:
            continue
        line = f"{p['HostIp']}:{p['HostPort']}"
        print(line if want else f"{p['ContainerPort']}/{p['Proto']} -> {line}")
        shown += 1
    if want and not shown:
        raise PybuildError(f"no public port '{args.port}' published for {c.name or c.id[:12]}")
    return 0


# --- inspect ------------------------------------------------------------------------------------
def cmd_inspect(args) -> int:
    from builder.containers import views
    from builder.errors import PybuildError
    from builder.gotemplate import parse

    tpl = parse(args.format) if args.format else None  # a bad template: usage error first
    out, rc = [], 0
    for ref in args.containers:
        try:
            out.append(views.inspect_json(_find(ref)))
        except PybuildError as e:
            sys.stderr.write(f"error: {e}\n")
            rc = 1
    if tpl is not None:
        for d in out:
            print(tpl.execute(d))
    else:
        print(json.dumps(out, indent=4))
    return rc
