"""Cold import time of cookiesession against Starlette's session middleware.

Each sample is a fresh interpreter (the venv's Python, started in the
repository root so the working tree's cookiesession is the one imported) that
times one import statement in the process itself, by wall clock
(`perf_counter`) and by CPU time (`process_time`): interpreter start-up is
excluded, every module the statement pulls in is included. Bytecode caches are
warm, as after any first run; one unrecorded run of each statement comes
first. The target is judged on CPU time, which on a busy machine leaves out
the time spent waiting for a CPU (an import reads cached files: it is CPU
work); the wall-clock figures are shown next to it.

Statements, run interleaved in an order shuffled every round:

- `import starlette.middleware.sessions` (the baseline);
- `import cookiesession`;
- `import cookiesession` after `import starlette.applications`, the marginal
  cost in an app that already runs Starlette.

Then `python -X importtime` (several runs, median per module) lists the
modules cookiesession loads that Starlette's session middleware does not, by
their own import time.

    python benchmarks/bench_import.py
    python benchmarks/bench_import.py --quick --output results/import.md
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

ROOT = Path(__file__).resolve().parent.parent
FULL_RUNS = 15
QUICK_RUNS = 7
IMPORTTIME_RUNS = 5
TARGET_MS = 25.0
TOP_MODULES = 15
TIMEOUT_S = 60


@dataclass(frozen=True, slots=True)
class Statement:
    """One import to time: a label, code run first, and the timed import."""

    label: str
    setup: str
    module: str

    def code(self) -> str:
        return (
            f"{self.setup}\n"
            "import time\n"
            "w, c = time.perf_counter(), time.process_time()\n"
            f"import {self.module}\n"
            "print((time.perf_counter() - w) * 1e3, (time.process_time() - c) * 1e3)\n"
        )


BASELINE = Statement(
    "import starlette.middleware.sessions", "", "starlette.middleware.sessions"
)
OURS = Statement("import cookiesession", "", "cookiesession")
AFTER_STARLETTE = Statement(
    "import cookiesession, starlette.applications already imported",
    "import starlette.applications",
    "cookiesession",
)
STATEMENTS = (BASELINE, OURS, AFTER_STARLETTE)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # Nothing from the caller may add modules or change the import system.
    for name in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONPROFILEIMPORTTIME"):
        env.pop(name, None)
    # The warm-up run writes bytecode for any source changed since the last
    # run, so that no timed run compiles.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done


@dataclass(slots=True)
class Samples:
    """Milliseconds per round: the import by wall clock and by CPU time, and
    the whole child process by wall clock."""

    wall: list[float]
    cpu: list[float]
    process: list[float]


def _sample(statement: Statement) -> tuple[float, float, float]:
    """Milliseconds: the import (wall, CPU) in the child, the whole child."""
    started = time.perf_counter()
    done = _run(["-c", statement.code()])
    process = (time.perf_counter() - started) * 1e3
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu), process


def _measure(runs: int, seed: int) -> dict[str, Samples]:
    samples = {s.label: Samples([], [], []) for s in STATEMENTS}
    for statement in STATEMENTS:  # warm the file and bytecode caches
        _sample(statement)
    rng = random.Random(seed)
    order = list(STATEMENTS)
    for index in range(runs):
        rng.shuffle(order)
        for statement in order:
            wall, cpu, process = _sample(statement)
            samples[statement.label].wall.append(wall)
            samples[statement.label].cpu.append(cpu)
            samples[statement.label].process.append(process)
        print(f"round {index + 1}/{runs}", file=sys.stderr, flush=True)
    return samples


# --------------------------------------------------------------------------
# -X importtime

#: Module name -> (own, cumulative) import time in microseconds.
ImportTimes = dict[str, tuple[float, float]]


def _importtime(module: str) -> ImportTimes:
    """Module -> (own us, cumulative us) for one `import module`."""
    done = _run(["-X", "importtime", "-c", f"import {module}"])
    table: dict[str, tuple[float, float]] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        table[name.strip()] = (float(own), float(cumulative))
    return table


def _median_importtime(module: str, runs: int) -> ImportTimes:
    collected: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(runs):
        for name, times in _importtime(module).items():
            collected[name].append(times)
    return {
        name: (
            statistics.median(t[0] for t in times),
            statistics.median(t[1] for t in times),
        )
        for name, times in collected.items()
    }


def _extra_modules(ours: ImportTimes, theirs: ImportTimes) -> list[list[str]]:
    """The heaviest modules only cookiesession loads, by own import time."""
    extra = {name: t for name, t in ours.items() if name not in theirs}
    ranked = sorted(extra.items(), key=lambda kv: -kv[1][0])
    return [
        [f"`{name}`", f"{own / 1e3:.2f}", f"{cumulative / 1e3:.2f}"]
        for name, (own, cumulative) in ranked[:TOP_MODULES]
    ]


def _groups(ours: ImportTimes, theirs: ImportTimes) -> list[list[str]]:
    """Own import time of the modules only cookiesession loads, by package."""
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for name, (own, _) in ours.items():
        if name in theirs:
            continue
        top = name.split(".")[0]
        totals[top] += own
        counts[top] += 1
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return [
        [f"`{top}`", str(counts[top]), f"{own / 1e3:.2f}"] for top, own in ranked[:10]
    ]


# --------------------------------------------------------------------------
# Report


def _range(values: list[float]) -> str:
    stats = _harness.Stats.of(values)
    return f"{stats.median:.1f} ({stats.p25:.1f}-{stats.p75:.1f})"


def _difference(ours: list[float], theirs: list[float]) -> _harness.Stats:
    # Statements of one round ran next to each other: pair them.
    return _harness.Stats.of([a - b for a, b in zip(ours, theirs, strict=True)])


def _report(
    samples: dict[str, Samples],
    importtimes: tuple[ImportTimes, ImportTimes],
    *,
    runs: int,
    seed: int,
    importtime_runs: int,
    elapsed_s: float,
) -> str:
    out = ["# Import time", ""]
    env = _harness.environment_rows(
        ["cookiesession", "starlette", "cryptography", "cbor2", "itsdangerous"],
        {
            "Method": f"{runs} rounds, one fresh interpreter per statement per "
            f"round, order shuffled every round (seed {seed}); warm bytecode "
            "caches; perf_counter and process_time around the import inside "
            "the child",
            "Run time": f"{elapsed_s:.1f} s",
        },
    )
    out += [_harness.markdown_table(["", ""], env), ""]

    rows = [
        [
            statement.label,
            _range(samples[statement.label].cpu),
            _range(samples[statement.label].wall),
            f"{statistics.median(samples[statement.label].process):.1f}",
        ]
        for statement in STATEMENTS
    ]
    out += [
        "## Time to import",
        "",
        "Milliseconds, median (p25-p75): the import statement inside the "
        "child by CPU time and by wall clock, and the whole child process "
        "(start-up, import, exit) by wall clock.",
        "",
        _harness.markdown_table(
            ["Statement", "Import, CPU ms", "Import, wall ms", "Process ms"],
            rows,
            "lrrr",
        ),
        "",
    ]

    ours, theirs = samples[OURS.label], samples[BASELINE.label]
    cpu = _difference(ours.cpu, theirs.cpu)
    wall = _difference(ours.wall, theirs.wall)
    verdict = "PASS" if cpu.median <= TARGET_MS else "MISS"
    out += [
        "## Target",
        "",
        "Differences are medians of per-round differences (p25-p75).",
        "",
        _harness.markdown_table(
            ["Target", "Measured", "Result"],
            [
                [
                    "`import cookiesession` adds at most "
                    f"{TARGET_MS:.0f} ms over `import starlette.middleware.sessions`",
                    f"{cpu.median:+.1f} ms CPU ({cpu.p25:+.1f} to {cpu.p75:+.1f}); "
                    f"wall {wall.median:+.1f} ms ({wall.p25:+.1f} to "
                    f"{wall.p75:+.1f})",
                    verdict,
                ]
            ],
            "lrl",
        ),
        "",
    ]

    ours_times, theirs_times = importtimes
    extra_total = sum(
        own for name, (own, _) in ours_times.items() if name not in theirs_times
    )
    all_total = sum(own for own, _ in ours_times.values())
    out += [
        "## What cookiesession loads that Starlette's middleware does not",
        "",
        f"`python -X importtime`, median of {importtime_runs} runs per module. "
        "Modules only `import cookiesession` loads take "
        f"{extra_total / 1e3:.1f} ms of own import time, of "
        f"{all_total / 1e3:.1f} ms for everything it loads "
        "(importtime's own overhead included; the in-process timing above is "
        "the reference). By top-level package:",
        "",
        _harness.markdown_table(
            ["Package", "Modules", "Own ms"],
            _groups(ours_times, theirs_times),
            "lrr",
        ),
        "",
        f"The {TOP_MODULES} heaviest of those modules:",
        "",
        _harness.markdown_table(
            ["Module", "Own ms", "Cumulative ms"],
            _extra_modules(ours_times, theirs_times),
            "lrr",
        ),
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_RUNS} rounds, not {FULL_RUNS}"
    )
    parser.add_argument("--runs", type=int, help="rounds (one sample each)")
    parser.add_argument("--seed", type=int, default=1, help="shuffle seed")
    parser.add_argument(
        "--output", type=Path, help="also write the Markdown report to this file"
    )
    args = parser.parse_args(argv)
    runs = args.runs or (QUICK_RUNS if args.quick else FULL_RUNS)
    if runs < 1:
        raise SystemExit("--runs must be positive")
    importtime_runs = 3 if args.quick else IMPORTTIME_RUNS
    started = time.perf_counter()
    samples = _measure(runs, args.seed)
    importtimes = (
        _median_importtime(OURS.module, importtime_runs),
        _median_importtime(BASELINE.module, importtime_runs),
    )
    elapsed = time.perf_counter() - started
    text = _report(
        samples,
        importtimes,
        runs=runs,
        seed=args.seed,
        importtime_runs=importtime_runs,
        elapsed_s=elapsed,
    )
    _harness.emit(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
