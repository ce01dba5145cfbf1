"""Shared timing helper for the benchmark scripts.

Method, chosen for small and noisy machines:

- Each case is a zero-argument callable. Its batch size (loops) is calibrated
  once so that one batch takes about `Plan.batch_ms`; calibration doubles as
  warm-up. A callable may perform several operations per call (`Case.ops`,
  e.g. one event-loop entry that drives many requests); times are then
  divided by the operations, not the calls.
- The run is a series of rounds. Every round runs one batch of every case, in
  an order shuffled afresh each round (seeded, so a run can be repeated).
  Interleaving spreads slow phases of the machine (other processes, frequency
  changes) over all cases instead of penalising whichever ran during them.
- A batch is timed with `time.perf_counter_ns` around a plain loop, with the
  garbage collector paused as `timeit` does; the loop and call overhead is
  measured separately and reported, not subtracted. `Plan.clock = "cpu"`
  times with this process's CPU clock instead (`time.process_time_ns`): for
  CPU-bound work on a shared machine it leaves out the time the process
  waited for a CPU, the largest noise there.
- Results are per-operation times: the median over rounds, with the
  interquartile range (p25-p75) and the median absolute deviation as spread.
  Two cases are compared by the median of their per-round ratios, which pairs
  batches that ran close together in time; a cost added over a baseline case
  is likewise the median of per-round differences.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib
import importlib.metadata
import itertools
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "Case",
    "Clock",
    "Measurement",
    "Plan",
    "Stats",
    "add_plan_arguments",
    "calibrate",
    "call_overhead_ns",
    "emit",
    "environment_rows",
    "format_range",
    "markdown_table",
    "package_version",
    "paired_differences",
    "paired_ratios",
    "plan_from_args",
    "quantile",
    "run_interleaved",
]


# --------------------------------------------------------------------------
# Statistics


def quantile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) by linear interpolation (NumPy's default)."""
    if not values:
        raise ValueError("quantile of an empty sequence")
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must lie in [0, 1]")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


@dataclass(frozen=True, slots=True)
class Stats:
    """Summary of a sample: median, quartiles, MAD, extremes, size."""

    median: float
    p25: float
    p75: float
    mad: float
    minimum: float
    maximum: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        median = statistics.median(values)
        return cls(
            median=median,
            p25=quantile(values, 0.25),
            p75=quantile(values, 0.75),
            mad=statistics.median(abs(v - median) for v in values),
            minimum=min(values),
            maximum=max(values),
            n=len(values),
        )

    @property
    def iqr_percent(self) -> float:
        """The interquartile range as a percentage of the median."""
        return 100.0 * (self.p75 - self.p25) / self.median if self.median else 0.0


# --------------------------------------------------------------------------
# Timing


@dataclass(frozen=True, slots=True)
class Case:
    """One timed cell: a name and a zero-argument callable.

    `ops` is how many operations one call of `func` performs; reported times
    are per operation.
    """

    name: str
    func: Callable[[], object]
    ops: int = 1

    def __post_init__(self) -> None:
        if self.ops < 1:
            raise ValueError("Case.ops must be at least 1")


@dataclass(slots=True)
class Measurement:
    """The batches of one case: calls per batch and ns per op, per round."""

    name: str
    loops: int
    per_op_ns: list[float] = field(default_factory=list)
    ops: int = 1

    @property
    def stats(self) -> Stats:
        return Stats.of(self.per_op_ns)


Clock = Literal["wall", "cpu"]
_CLOCKS: dict[str, Callable[[], int]] = {
    "wall": time.perf_counter_ns,
    "cpu": time.process_time_ns,
}
_CLOCK_NAMES = {"wall": "perf_counter_ns", "cpu": "process_time_ns (CPU time)"}


@dataclass(frozen=True, slots=True)
class Plan:
    """How long to measure: rounds, target batch duration, shuffle seed, clock."""

    rounds: int
    batch_ms: float
    seed: int = 1
    warmup_rounds: int = 0
    clock: Clock = "wall"

    def __post_init__(self) -> None:
        if self.clock not in _CLOCKS:
            raise ValueError("Plan.clock must be 'wall' or 'cpu'")

    def describe(self) -> str:
        warmup = (
            f" after {self.warmup_rounds} unrecorded round(s)"
            if self.warmup_rounds
            else ""
        )
        return (
            f"{self.rounds} interleaved rounds{warmup}, case order shuffled "
            f"every round (seed {self.seed}); batches of ~{self.batch_ms:g} ms "
            f"timed with {_CLOCK_NAMES[self.clock]}, GC paused during batches"
        )


def _time_batch(
    func: Callable[[], object],
    loops: int,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> int:
    """Run `func` `loops` times; return the elapsed nanoseconds of `clock`."""
    repeat = itertools.repeat(None, loops)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        for _ in repeat:
            func()
        return clock() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def calibrate(
    func: Callable[[], object],
    batch_ns: float,
    *,
    max_loops: int = 10**8,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> int:
    """Loops per batch so that one batch of `func` takes about `batch_ns`."""
    loops = 1
    while True:
        elapsed = _time_batch(func, loops, clock)
        if elapsed >= batch_ns / 5 or loops >= max_loops:
            break
        # Jump straight near the target once a timing is meaningful.
        if elapsed > 100_000:
            loops = max(loops * 2, math.ceil(loops * batch_ns / 5 / elapsed))
        else:
            loops *= 2
    return max(1, min(max_loops, round(loops * batch_ns / max(elapsed, 1))))


def _noop() -> None:
    return None


def call_overhead_ns(samples: int = 5, loops: int = 200_000) -> float:
    """Median ns per iteration of the batch loop around a no-op function."""
    return statistics.median(_time_batch(_noop, loops) / loops for _ in range(samples))


def run_interleaved(
    cases: Sequence[Case],
    plan: Plan,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Measurement]:
    """Measure every case under `plan`; return measurements by case name."""
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise ValueError("case names must be unique")
    if plan.rounds < 1:
        raise ValueError("plan.rounds must be at least 1")
    batch_ns = plan.batch_ms * 1e6
    clock = _CLOCKS[plan.clock]
    results = {
        case.name: Measurement(
            case.name, calibrate(case.func, batch_ns, clock=clock), ops=case.ops
        )
        for case in cases
    }
    rng = random.Random(plan.seed)
    order = list(cases)
    total = plan.warmup_rounds + plan.rounds
    for round_index in range(total):
        rng.shuffle(order)
        gc.collect()
        recording = round_index >= plan.warmup_rounds
        for case in order:
            measurement = results[case.name]
            elapsed = _time_batch(case.func, measurement.loops, clock)
            if recording:
                operations = measurement.loops * measurement.ops
                measurement.per_op_ns.append(elapsed / operations)
        if progress is not None:
            progress(f"round {round_index + 1}/{total}")
    return results


def paired_ratios(numerator: Measurement, denominator: Measurement) -> list[float]:
    """Per-round ratios numerator / denominator of per-op times."""
    if len(numerator.per_op_ns) != len(denominator.per_op_ns):
        raise ValueError("measurements come from different runs")
    return [
        a / b for a, b in zip(numerator.per_op_ns, denominator.per_op_ns, strict=True)
    ]


def paired_differences(minuend: Measurement, subtrahend: Measurement) -> list[float]:
    """Per-round differences minuend - subtrahend of per-op times (ns)."""
    if len(minuend.per_op_ns) != len(subtrahend.per_op_ns):
        raise ValueError("measurements come from different runs")
    return [a - b for a, b in zip(minuend.per_op_ns, subtrahend.per_op_ns, strict=True)]


# --------------------------------------------------------------------------
# Environment


def package_version(name: str) -> str:
    """Installed version of a distribution, or where its module came from."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        module = importlib.import_module(name)
    except ImportError:
        return "not installed"
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    location = getattr(module, "__file__", None)
    if location is None:
        return "unknown version"
    where = Path(location).resolve().parent
    with contextlib.suppress(ValueError):
        where = where.relative_to(Path.cwd())
    return f"not installed, imported from {where}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _usable_cpus() -> str:
    total = os.cpu_count() or 0
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        usable = len(affinity(0))
        if usable != total:
            return f"{usable} usable of {total} CPUs"
    return f"{total} CPUs"


def environment_rows(
    packages: Iterable[str], extra: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Rows describing the machine, Python and package versions."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        ("Date", now),
        ("Machine", f"{platform.machine()}, {_cpu_model()}, {_usable_cpus()}"),
        ("OS", platform.platform()),
        (
            "Python",
            f"{platform.python_implementation()} {platform.python_version()} "
            f"({platform.python_compiler()})",
        ),
    ]
    getloadavg = getattr(os, "getloadavg", None)
    if getloadavg is not None:
        # Other work on the machine shows here; a busy machine widens spreads.
        one, five, _ = getloadavg()
        rows.append(("Load average", f"{one:.2f} (1 min), {five:.2f} (5 min)"))
    rows += [(name, package_version(name)) for name in packages]
    if extra:
        rows += list(extra.items())
    return rows


# --------------------------------------------------------------------------
# Output


def format_range(stats: Stats, scale: float = 1e-3, digits: int = 2) -> str:
    """`median (p25-p75)` with values multiplied by `scale` (ns to us)."""
    median = stats.median * scale
    low = stats.p25 * scale
    high = stats.p75 * scale
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], align: str = ""
) -> str:
    """A Markdown table; `align` holds one of `l`, `r`, `c` per column."""
    markers = {"l": ":---", "r": "---:", "c": ":---:"}
    spec = align.ljust(len(header), "l")
    lines = [
        "| " + " | ".join(_escape(h) for h in header) + " |",
        "| " + " | ".join(markers[a] for a in spec) + " |",
    ]
    for row in rows:
        if len(row) != len(header):
            raise ValueError("row length differs from the header's")
        lines.append("| " + " | ".join(_escape(c) for c in row) + " |")
    return "\n".join(lines)


def emit(text: str, output: Path | None = None) -> None:
    """Print `text` to stdout and, if `output` is given, write it there too."""
    if not text.endswith("\n"):
        text += "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------
# Command line


def add_plan_arguments(
    parser: argparse.ArgumentParser, full: Plan, quick: Plan
) -> None:
    """Add --quick, --rounds, --batch-ms, --seed, --clock, --output to `parser`."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"short run: {quick.rounds} rounds of ~{quick.batch_ms:g} ms batches",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"rounds to record (default {full.rounds}, quick {quick.rounds})",
    )
    parser.add_argument(
        "--batch-ms",
        type=float,
        help=f"target batch duration (default {full.batch_ms:g}, "
        f"quick {quick.batch_ms:g})",
    )
    parser.add_argument("--seed", type=int, help=f"shuffle seed (default {full.seed})")
    parser.add_argument(
        "--clock",
        choices=sorted(_CLOCKS),
        help="time batches by wall clock or by this process's CPU time "
        f"(default {full.clock})",
    )
    parser.add_argument(
        "--output", type=Path, help="also write the Markdown report to this file"
    )


def plan_from_args(args: argparse.Namespace, full: Plan, quick: Plan) -> Plan:
    """The plan selected by the arguments `add_plan_arguments` added."""
    base = quick if args.quick else full
    rounds = base.rounds if args.rounds is None else int(args.rounds)
    batch_ms = base.batch_ms if args.batch_ms is None else float(args.batch_ms)
    seed = base.seed if args.seed is None else int(args.seed)
    if rounds < 1 or batch_ms <= 0:
        raise SystemExit("--rounds and --batch-ms must be positive")
    clock = getattr(args, "clock", None) or base.clock
    return Plan(
        rounds=rounds,
        batch_ms=batch_ms,
        seed=seed,
        warmup_rounds=base.warmup_rounds,
        clock=clock,
    )
