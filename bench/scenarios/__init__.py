"""The scenarios (issue 9's seven, and issue 18's repeated --no-cache build) and the environment they share.

Owns: `Env` (mode, bench directories, the imported base, the pybuild driver and the started
peers) and `SCENARIOS`, the ordered table key -> module. Each scenario module exposes `KEY`,
`TITLE` and `run(env, key) -> ScenarioResult`; a pybuild variant whose feature has not landed yet
reports "not available yet" instead of failing. Must not: start or stop peers (bench.__main__
does) or print (the caller formats results).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from bench.peers import Builder, Pybuild

# key -> module under bench.scenarios, in the order
SCENARIOS: dict[str, str] = {
    "copy2k": "copy_build",
    "copy50k": "copy_build",
    "export": "layer_export",
    "run": "run_true",
    "parse": "parse",
    "stages": "stages",
    "rss": "peak_rss",
    "repeat": "repeat_nocache",
}

MODES = ("full", "quick", "smoke")


@dataclass(slots=True)
class Env:
    """Everything a scenario needs. `state` is a fresh on-disk dir (tool stores), `shm` a
    fresh dir on /dev/shm (inputs), `short` a short path for unix sockets."""

    mode: str
    state: Path
    shm: Path
    short: Path
    base_tar: Path
    base_rootfs: Path
    pybuild: Pybuild
    peers: list[Builder] = field(default_factory=list)

    def reps(self, full: int, quick: int) -> int:
        return {"full": full, "quick": quick}.get(self.mode, 1)

    @property
    def warmup(self) -> int:
        return 0 if self.mode == "smoke" else 1

    def size(self, real: int, smoke: int) -> int:
        """The issue's input size, or a tiny one for the smoke test."""
        return smoke if self.mode == "smoke" else real

    def builders(self) -> list[Builder]:
        return [self.pybuild, *self.peers]

    def fresh_dir(self, name: str, *, on_shm: bool = True) -> Path:
        base = self.shm if on_shm else self.state
        n = 0
        while (base / f"{name}.{n}").exists():
            n += 1
        p = base / f"{name}.{n}"
        p.mkdir(parents=True)
        return p


def scenario_module(key: str) -> ModuleType:
    return importlib.import_module(f"bench.scenarios.{SCENARIOS[key]}")
