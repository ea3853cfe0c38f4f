"""`python -m bench` (or `bench/run`): every scenario, side by side, in one run.

Owns: the command line (mode, scenario selection, peers, JSON output), preparing the shared
environment (fresh dirs, busybox base imported into each tool, private dockerd) and tearing it
down again, whatever happens. Must not: hold scenario logic (bench.scenarios) or timing logic
(bench.harness).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.harness import (NotAvailable, Row, ScenarioResult, format_result, machine_info,
                           to_json, to_markdown)
from bench.peers import Buildah, BuildkitRef, Docker, Pybuild, install_peers, remove_tree
from bench.scenarios import MODES, SCENARIOS, Env, scenario_module
from bench.scenarios.data import make_busybox_rootfs, tar_tree


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=MODES, default="full",
                   help="full: the issue's reps; quick: fewer reps; smoke: tiny inputs, 1 rep")
    p.add_argument("--quick", dest="mode", action="store_const", const="quick")
    p.add_argument("--smoke", dest="mode", action="store_const", const="smoke")
    p.add_argument("--only", default="", help=f"comma list of scenarios: {','.join(SCENARIOS)}")
    p.add_argument("--peers", default="auto",
                   help="comma list of docker,buildkit-ref,buildah; 'auto' = those installed; 'none'")
    p.add_argument("--install-peers", action="store_true",
                   help="apt-get install Debian's docker.io and buildah first")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    p.add_argument("--state-dir", default="/var/tmp",
                   help="where tool stores go (a fresh dir is made inside; default /var/tmp)")
    return p.parse_args(argv)


PEERS = {"docker": Docker, "buildkit-ref": BuildkitRef, "buildah": Buildah}


def choose_peers(spec: str) -> list[str]:
    if spec == "none":
        return []
    if spec == "auto":
        return [n for n, cls in PEERS.items() if cls.installed()]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in PEERS]
    if bad:
        raise SystemExit(f"bench: unknown peer {bad[0]!r} ({', '.join(PEERS)})")
    return names


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def versions(peers: list[str]) -> dict[str, str]:
    out = {}
    probes = {"docker": ["/usr/sbin/dockerd", "--version"], "buildah": ["buildah", "--version"],
              "buildkit-ref": [BuildkitRef.dockerd_bin, "--version"],
              "runc": ["runc", "--version"], "crun": ["crun", "--version"],
              "zstd": ["zstd", "--version"], "busybox": ["busybox"]}
    for name, cmd in probes.items():
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            out[name] = (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            out[name] = "not installed"
    try:
        r = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True)
        out["pybuild"] = f"git {r.stdout.strip()}"
    except OSError:
        pass
    return out


def _terminate(signum, _frame) -> None:
    # SIGTERM (a timeout, a CI cancel) must still stop dockerd and remove the bench dirs
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Tools under test run with bytecode caches, as an installed pybuild has them.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    signal.signal(signal.SIGTERM, _terminate)
    load_start = [round(x, 2) for x in os.getloadavg()]
    keys = [k.strip() for k in args.only.split(",") if k.strip()] or list(SCENARIOS)
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        print(f"bench: unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}",
              file=sys.stderr)
        return 2
    if args.install_peers:
        log("installing docker.io and buildah (apt-get)")
        install_peers()
        BuildkitRef.install()
    peer_names = choose_peers(args.peers)

    state = Path(tempfile.mkdtemp(prefix="pybuild-bench-", dir=args.state_dir))
    shm_base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    shm = Path(tempfile.mkdtemp(prefix="pybuild-bench-", dir=shm_base))
    short = Path(tempfile.mkdtemp(prefix="pbb-", dir="/tmp"))
    started = []
    results: list[ScenarioResult] = []
    try:
        rootfs = make_busybox_rootfs(shm / "busybox-rootfs")
        base_tar = tar_tree(rootfs, shm / "busybox.tar")
        pyb = Pybuild(state / "pybuild")
        pyb.import_base(base_tar)
        if pyb.base_error:
            log(f"pybuild base: {pyb.base_error}")
        env = Env(args.mode, state, shm, short, base_tar, rootfs, pyb)
        for name in peer_names:
            peer = PEERS[name](state, short)
            log(f"starting {name}")
            try:
                peer.start()
                started.append(peer)
                peer.import_base(base_tar)
                env.peers.append(peer)
            except NotAvailable as e:
                log(f"{name} left out: {e}")
        done: set[str] = set()
        for key in keys:
            log(f"scenario {key}")
            mod = scenario_module(key)
            try:
                res = mod.run(env, key)
            except Exception as e:  # a broken scenario must not hide the others
                res = ScenarioResult(key, getattr(mod, "TITLE", key))
                res.rows.append(Row("scenario", None, f"failed: {type(e).__name__}: {e}"))
                traceback.print_exc(file=sys.stderr)
            results.append(res)
            done.add(key)
            print(format_result(res), flush=True)
            print(flush=True)
    finally:
        for peer in started:
            log(f"stopping {peer.name}")
            peer.stop()
        remove_tree(state)
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(short, ignore_errors=True)
    meta = machine_info()
    meta["mode"] = args.mode
    meta["loadavg_start"] = load_start
    meta["command"] = " ".join(["bench/run", *(argv if argv is not None else sys.argv[1:])])
    meta["versions"] = versions(peer_names)
    meta["peers"] = [p.name for p in started]
    if args.json:
        Path(args.json).write_text(to_json(results, meta) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(results, meta) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
