"""Health checks of detached containers: the image's HEALTHCHECK and `run --health-*`.

Owns: docker's HealthConfig (Test, Interval, Timeout, StartPeriod, Retries; durations in
nanoseconds), merging flags over the image's, and the checker the monitor runs while its
container runs: every Interval, the Test through `pybuild exec` (a fresh process, since a
setns into the container needs a single-threaded caller and the monitor has threads), with
Timeout; `starting` until the first success, `unhealthy` after Retries failures in a row
(failures inside StartPeriod do not count), `healthy` on success. The result goes to
state.json's Health (docker's shape: Status, FailingStreak, Log of the last 5 checks).
Must not: stop or restart the container on its own (docker does not either).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

from builder.errors import UsageError

SECOND = 1_000_000_000
DEFAULTS = {"Interval": 30 * SECOND, "Timeout": 30 * SECOND, "StartPeriod": 0, "Retries": 3}


def parse_duration(text: str, flag: str) -> int:
    """Go's duration syntax (1m30s, 500ms, 2h) → nanoseconds."""
    t = text.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise UsageError(f"invalid {flag} {text!r}: a duration like 30s, 1m30s or 500ms")
    unit = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
    return int(sum(float(n) * unit[u] for n, u in parts))


def from_flags(args) -> dict:
    hc: dict = {}
    if getattr(args, "health_cmd", None):
        hc["Test"] = ["CMD-SHELL", args.health_cmd]
    for flag, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                      ("health_start_period", "StartPeriod")):
        v = getattr(args, flag, None)
        if v:
            hc[key] = parse_duration(v, "--" + flag.replace("_", "-"))
            if hc[key] < 0 or (key != "StartPeriod" and hc[key] < SECOND // 1000):
                raise UsageError(f"--{flag.replace('_', '-')} {v}: too short")
    if getattr(args, "health_retries", None) is not None:
        if args.health_retries < 1:
            raise UsageError("--health-retries must be at least 1")
        hc["Retries"] = args.health_retries
    if getattr(args, "no_healthcheck", False) and hc.get("Test"):
        raise UsageError("--no-healthcheck conflicts with --health-cmd")
    return hc


def merge(image: dict | None, flags: dict, *, disabled: bool) -> dict | None:
    if disabled:
        return None
    hc = {**(image or {}), **flags}
    test = hc.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    return {**DEFAULTS, **{k: v for k, v in hc.items() if v}}


def _argv(test: list[str]) -> list[str]:
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return list(test[1:]) if test[0] == "CMD" else list(test)


class Checker:
    """One thread per start of the container; ends when `running()` turns false."""

    def __init__(self, c, hc: dict, running) -> None:
        self.c, self.hc, self.running = c, hc, running
        self.started = time.monotonic()
        self.streak = 0
        self.log: list[dict] = []

    def start(self) -> None:
        self.c.write_state(Health={"Status": "starting", "FailingStreak": 0, "Log": []})
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        from builder.containers.state import now_iso
        interval = self.hc["Interval"] / SECOND
        status = "starting"
        while True:
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline:
                if not self.running():
                    return
                time.sleep(min(0.1, interval))
            if not self.running():
                return
            begin = now_iso()
            code, out = self._check()
            if not self.running():
                return
            self.log = (self.log + [{"Start": begin, "End": now_iso(), "ExitCode": code, "Output": out}])[-5:]
            if code == 0:
                self.streak, status = 0, "healthy"
            elif time.monotonic() - self.started >= self.hc["StartPeriod"] / SECOND or status != "starting":
                self.streak += 1
                if self.streak >= self.hc["Retries"]:
                    status = "unhealthy"
            self.c.write_state(Health={"Status": status, "FailingStreak": self.streak, "Log": self.log})

    def _check(self) -> tuple[int, str]:
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = f"import sys;sys.path.insert(0,{repo!r});from builder.cli import main;main()"
        argv = [sys.executable, "-c", boot, "exec", self.c.id, *_argv(self.hc["Test"])]
        try:
            r = subprocess.run(argv, capture_output=True, timeout=self.hc["Timeout"] / SECOND,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return -1, f"Health check exceeded timeout ({self.hc['Timeout'] / SECOND:g}s)"
        return (0 if r.returncode == 0 else 1), (r.stdout + r.stderr).decode(errors="replace")[-4096:]
