"""The benchmark's table: a header saying when and where the figures were measured, each report's section, and
the speed targets (``TARGET_*``) as PASS/MISS.

Timings depend on the machine, its load and the library versions: the header prints when and where they were
measured (date, CPU model and count, torch threads, versions, load average), and CPU seconds are reported beside
wall seconds. No test asserts a time.
"""

from __future__ import annotations

from experiments.benchmark.common import _fmt
from experiments.benchmark.memory import format_memory, memory_targets
from experiments.benchmark.parity import format_parity, parity_targets
from experiments.benchmark.solve import format_solve, solve_targets
from experiments.benchmark.throughput import format_throughput, throughput_targets

# Each report of --mode all, in the order it runs: (its key in the results, its targets, its section).
SECTIONS = (("throughput", throughput_targets, format_throughput), ("solve", solve_targets, format_solve),
            ("memory", memory_targets, format_memory), ("parity", parity_targets, format_parity))


def targets(results: dict) -> list[dict]:
    """PASS/MISS of each speed target the run measured ("n/a" when its reference was not run)."""
    return [row for key, report_targets, _ in SECTIONS if results.get(key)
            for row in report_targets(results[key])]


def format_report(results: dict) -> str:
    meta = results["meta"]
    lines = [f"PPO benchmark — {meta['env']} — measured {meta['time']} on {meta['machine']['cpu_model']} "
             f"({meta['cpus']} CPUs), {meta['machine']['platform']}",
             f"  Python {meta['python']}, torch {meta['torch']}, gymnasium {meta['gymnasium']}, "
             f"SB3 {meta['stable_baselines3'] or 'not run'}; our torch threads {meta['torch_threads']}",
             "  These figures hold for this machine, its load and these versions only: on another machine or with "
             "other versions, rerun it.",
             *([f"our config with overrides: {' '.join(meta['overrides'])}"] if meta["overrides"] else []),
             f"load average at start {meta['load_start']:.2f}, at end {meta['load_end']:.2f}"
             + ("  (machine busy: other processes competed for the CPUs; wall times are inflated, see CPU s)"
                if meta["busy"] else "")]
    for key, _, section in SECTIONS:
        if results.get(key):
            lines += section(results[key])
    rows = results.get("targets", [])
    if rows:
        lines += ["", "TARGETS"]
        for t in rows:
            value = _fmt(t["value"], 3) if isinstance(t["value"], float) else _fmt(t["value"])
            note = f"  ({t['note']})" if t["note"] else ""
            goal = f"{t['compare'].replace('<=', '≤').replace('>=', '≥')} {t['threshold']:.3g}"
            lines.append(f"  {t['status']:<5} {t['target']:<52} {value:>10}   goal {goal}{note}")
    return "\n".join(lines)
