"""The measuring harness: interleaved runs, statistics, ratios, printing and JSON.

Owns: how a scenario's variants are timed (A B A B … so machine noise hits every variant
alike), the Stats value (min / median / max), the pybuild/peer ratio, the text table and the
JSON document. Must not: know any tool or scenario (bench.peers and bench.scenarios do), or be
imported by pybuild itself.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence


class NotAvailable(Exception):
    """A variant cannot run on this machine or at this state of pybuild (message says why);
    `output` keeps the failed command's whole stderr for callers that classify it."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True, slots=True)
class Stats:
    """Samples of one variant, in the unit of the scenario (seconds unless `unit` says)."""

    samples: tuple[float, ...]
    unit: str = "s"

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a scenario's table: a variant's stats, or why it has none."""

    name: str
    stats: Stats | None = None
    note: str = ""  # "not available yet: …", or a detail such as MB/s

    @property
    def ok(self) -> bool:
        return self.stats is not None


@dataclass(frozen=True, slots=True)
class Variant:
    """Something to time: `setup` runs untimed before each sample, `run` is timed.

    `measure`, when given, replaces wall-clock timing: it runs the sample and returns the
    figure itself (for peak RSS, or a time reported from inside another process)."""

    name: str
    run: Callable[[], None] | None = None
    setup: Callable[[], None] | None = None
    measure: Callable[[], float] | None = None
    unit: str = "s"


@dataclass(slots=True)
class ScenarioResult:
    """The rows of one scenario plus the ratios it quotes (pybuild variant / peer variant)."""

    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    ratios: list[tuple[str, str, float | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    def add_ratio(self, num: str, den: str) -> None:
        """Median of `num` over median of `den`; None when either is missing."""
        a, b = self.row(num), self.row(den)
        value = None
        if a and b and a.stats and b.stats and b.stats.median > 0:
            value = a.stats.median / b.stats.median
        self.ratios.append((num, den, value))


def interleaved_order(names: Sequence[str], reps: int) -> list[str]:
    """A B C A B C …: round r runs every variant once, rotated by r so no variant is always first."""
    out: list[str] = []
    n = len(names)
    for r in range(reps if n else 0):
        out.extend(names[(i + r) % n] for i in range(n))
    return out


def run_interleaved(variants: Sequence[Variant], reps: int, warmup: int = 1,
                    clock: Callable[[], float] = time.perf_counter) -> list[Row]:
    """Time every variant `reps` times, interleaved; a variant that raises NotAvailable (in a
    warm-up or a sample) drops out with that message, the others carry on."""
    by_name = {v.name: v for v in variants}
    failed: dict[str, str] = {}
    samples: dict[str, list[float]] = {v.name: [] for v in variants}

    def one(v: Variant) -> float:
        if v.setup:
            v.setup()
        if v.measure:
            return v.measure()
        assert v.run is not None
        t0 = clock()
        v.run()
        return clock() - t0

    names = [v.name for v in variants]
    for name in interleaved_order(names, warmup):
        if name in failed:
            continue
        try:
            one(by_name[name])
        except NotAvailable as e:
            failed[name] = str(e)
    for name in interleaved_order(names, reps):
        if name in failed:
            continue
        try:
            samples[name].append(one(by_name[name]))
        except NotAvailable as e:
            failed[name] = str(e)
    rows = []
    for v in variants:
        if v.name in failed:
            rows.append(Row(v.name, None, failed[v.name]))
        else:
            rows.append(Row(v.name, Stats(tuple(samples[v.name]), v.unit)))
    return rows


def check(cmd: Sequence[str], *, what: str = "", env: dict | None = None, cwd=None,
          timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run a command whose failure means "this variant cannot run": NotAvailable with its last
    error line, never a traceback in the middle of a table. The command gets its own process
    group so a timeout ends everything it started, not just the first process."""
    try:
        proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise NotAvailable(f"{cmd[0]} not installed") from None
    try:
        out, errb = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise NotAvailable(f"{what or cmd[0]}: timed out after {timeout:.0f} s") from None
    except BaseException:  # the bench itself interrupted: leave nothing running
        kill_group(proc)
        raise
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, errb)
    if r.returncode != 0:
        text = (r.stderr or r.stdout).decode(errors="replace").strip()
        raise NotAvailable(f"{what or ' '.join(map(str, cmd[:3]))} failed: "
                           f"{error_line(text, r.returncode)[:200]}", text)
    return r


def error_line(text: str, status: int) -> str:
    """The line that says what went wrong: the last one naming an error (a trailing hint such
    as "run with --debug" says nothing), else the last line, else the exit status."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    named = [l for l in lines if "error" in l.lower() and "--debug" not in l]
    return (named or lines or [f"exit status {status}"])[-1]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group we started, SIGKILL it after 10 s."""
    import signal
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def fmt_value(v: float, unit: str) -> str:
    if unit == "s":
        if v < 1e-3:
            return f"{v * 1e6:.0f} µs"
        if v < 1:
            return f"{v * 1e3:.1f} ms"
        return f"{v:.2f} s"
    if unit == "MiB":
        return f"{v:.0f} MiB"
    return f"{v:.3g} {unit}"


def format_result(res: ScenarioResult) -> str:
    lines = [f"== {res.key}: {res.title}"]
    width = max([len(r.name) for r in res.rows] + [10])
    lines.append(f"  {'variant':<{width}}  {'min':>10} {'median':>10} {'max':>10}   n")
    for r in res.rows:
        if r.stats:
            s = r.stats
            lines.append(f"  {r.name:<{width}}  {fmt_value(s.min, s.unit):>10} "
                         f"{fmt_value(s.median, s.unit):>10} {fmt_value(s.max, s.unit):>10}"
                         f"  {len(s.samples):>2}" + (f"   {r.note}" if r.note else ""))
        else:
            lines.append(f"  {r.name:<{width}}  {r.note}")
    for num, den, value in res.ratios:
        shown = f"{value:.2f}×" if value is not None else "n/a"
        lines.append(f"  ratio {num} / {den} = {shown}")
    lines.extend(f"  note: {n}" for n in res.notes)
    return "\n".join(lines)


def machine_info() -> dict:
    """What RESULTS.md needs to say where the figures come from."""
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        # the machine is shared: the load says how much the figures were disturbed
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def to_json(results: Sequence[ScenarioResult], meta: dict) -> str:
    doc = {"meta": meta, "scenarios": []}
    for res in results:
        doc["scenarios"].append({
            "key": res.key,
            "title": res.title,
            "rows": [{
                "name": r.name,
                "note": r.note,
                **({"unit": r.stats.unit, "min": r.stats.min, "median": r.stats.median,
                    "max": r.stats.max, "samples": list(r.stats.samples)} if r.stats else
                   {"available": False}),
            } for r in res.rows],
            "ratios": [{"num": a, "den": b, "value": v} for a, b, v in res.ratios],
            "notes": res.notes,
        })
    return json.dumps(doc, indent=2, ensure_ascii=False)


__all__ = ["NotAvailable", "Stats", "Row", "Variant", "ScenarioResult", "interleaved_order",
           "run_interleaved", "check", "format_result", "machine_info", "to_json"]


def to_markdown(results: Sequence[ScenarioResult], meta: dict) -> str:
    """The tables of one run as Markdown, for bench/RESULTS.md."""
    out = [f"Run: {meta.get('date', '?')}, mode `{meta.get('mode', '?')}`, command "
           f"`{meta.get('command', '?')}`", "",
           f"Machine: {meta.get('nproc')} cores ({meta.get('cpu', '')}), {meta.get('ram_gib')} GiB "
           f"RAM, kernel {meta.get('kernel')}, Python {meta.get('python')}; load average at "
           f"start {meta.get('loadavg_start')}, at end {meta.get('loadavg')}", ""]
    vers = meta.get("versions", {})
    if vers:
        out.append("Versions: " + "; ".join(f"{k}: {v}" for k, v in vers.items()))
        out.append("")
    for res in results:
        out += [f"### {res.key}: {res.title}", "",
                "| variant | min | median | max | n | note |", "|---|---:|---:|---:|---:|---|"]
        for r in res.rows:
            if r.stats:
                s = r.stats
                out.append(f"| {r.name} | {fmt_value(s.min, s.unit)} | {fmt_value(s.median, s.unit)} "
                           f"| {fmt_value(s.max, s.unit)} | {len(s.samples)} | {r.note} |")
            else:
                out.append(f"| {r.name} | – | – | – | 0 | {r.note} |")
        out.append("")
        for num, den, value in res.ratios:
            out.append(f"- {num} / {den}: " + (f"**{value:.2f}×**" if value is not None else "n/a"))
        out += [f"- note: {n}" for n in res.notes]
        out.append("")
    return "\n".join(out)
