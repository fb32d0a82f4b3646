"""The sweep benchmark: ``python -m experiments.benchmark --mode sweep``.

Times the users' everyday sweep — ``agent.clip_ratio=0.1,0.2,0.3,0.4 agent.entropy_coef=0,0.001,0.01,0.1`` × 3
seeds, 48 runs of the tuned CartPole config at 100k steps each (``--steps`` to change) — as two real Hydra
multiruns in fresh processes, interleaved ``--repeats`` times:

- ``hydra/launcher=population hydra.launcher.n_jobs=2 torch_threads=1`` ("population"): two worker processes,
  each training one batched population of 24 (the launcher's recommended setting on a 2-core CPU);
- ``hydra/launcher=population torch_threads=2`` ("population, one process"): the 48 runs as one population;
- ``hydra/launcher=joblib hydra.launcher.n_jobs=2``: two worker processes, one run after another each.

Per method: wall and CPU seconds, the peak resident memory of the largest process, and where the time went
(population: the trainers' rollout, update and evaluation seconds from their log lines, divided by the workers,
the rest being start-up, composition, logging and checkpoints; joblib: the runs' own ``charts/rollout_seconds`` and
``charts/update_seconds`` summed and divided by the 2 workers). With Stable-Baselines3 installed (the ``bench``
extra), one rl-baselines3-zoo CartPole run (its tuned settings, 100k steps, a fresh process) is timed too.

**Equivalence**: the final deterministic evaluations of the same 48 jobs trained both ways are compared with a
two-sided permutation test (p), and so are ``--seeds`` (default 20) seeds of the tuned CartPole config and of the
bandit, trained as one population and as solo runs.

Seeds start at ``--first-seed`` (default 1000: the tuned config was tuned on seeds 0–39).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from experiments.benchmark.common import _run_once, permutation_test, ratio_spread, run_peak_rss, spread
from experiments.benchmark.sb3 import SB3_WALL_SCRIPT, SB3_ZOO_CARTPOLE, sb3_available

CLIPS = "0.1,0.2,0.3,0.4"
ENTROPIES = "0,0.001,0.01,0.1"
SEEDS_PER_POINT = 3
SWEEP_STEPS = 100_000
EQUIVALENCE_SEEDS = 20
TARGET_SWEEP_SPEEDUP = 5.0      # the population sweep ≥ 5× faster in wall time than the joblib sweep
TARGET_SWEEP_RSS_MB = 1500.0     # peak RSS of the population sweep
JOBLIB_WORKERS = 2


METHODS = ("population", "population, one process", "joblib")


def slug(method: str) -> str:
    """A method's name as a folder name (Hydra reads a comma in an override as a sweep)."""
    return method.replace(", ", "-").replace(" ", "-")


def launcher_overrides(method: str) -> list[str]:
    if method == "population":
        return ["hydra/launcher=population", f"hydra.launcher.n_jobs={JOBLIB_WORKERS}", "torch_threads=1"]
    if method == "population, one process":
        return ["hydra/launcher=population", "torch_threads=2"]
    return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={JOBLIB_WORKERS}", "torch_threads=1"]


def multirun(method: str, overrides: Sequence[str], sweep_dir: Path, timeout: float = 3600.0,
             launcher: Optional[Sequence[str]] = None) -> dict:
    """One multirun in a fresh process: wall and CPU seconds, peak RSS (MB) and its output. ``launcher``: the
    launcher overrides, if not the method's own."""
    launcher = launcher_overrides(method) if launcher is None else list(launcher)
    cmd = [sys.executable, "-m", "experiments.train", "-m", *overrides, *launcher, "progress=false",
           f"hydra.sweep.dir={sweep_dir}"]
    wall, cpu, out, peak = run_peak_rss(cmd, timeout)
    return {"command": " ".join(cmd), "wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": peak, "output": out}


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir() and (p / "tb").is_dir())


def finals(sweep_dir: Path) -> dict[str, float]:
    """Job folder name → its final deterministic evaluation (``hparams/final_eval_return``)."""
    from experiments.sweep_report import read_scalars

    out = {}
    for job in job_dirs(sweep_dir):
        events = read_scalars(job / "tb", ["hparams/final_eval_return"])["hparams/final_eval_return"]
        if events:
            out[job.name] = events[-1][2]
    return out


def phases(method: str, run: dict, sweep_dir: Path) -> dict:
    """Where a multirun's wall time went (seconds)."""
    from experiments.population import POOL_TIMING, TIMING
    from experiments.sweep_report import read_scalars

    if method.startswith("population"):
        found = [tuple(map(float, m.groups()[1:])) for m in TIMING.finditer(run["output"])]
        pool = POOL_TIMING.search(run["output"])
        train, workers = (float(pool.group(1)), int(pool.group(2))) if pool else (sum(x[0] for x in found), 1)
        rollout, update, evaluation = (sum(x[i] for x in found) / workers for i in (1, 2, 3))
        return {"rollout": rollout, "update": update, "evaluation": evaluation,
                "start-up and the rest": run["wall_seconds"] - train, "populations": len(found),
                "workers": workers}
    rollout = update = 0.0
    for job in job_dirs(sweep_dir):
        tags = read_scalars(job / "tb", ["charts/rollout_seconds", "charts/update_seconds"])
        rollout += sum(v for _, _, v in tags["charts/rollout_seconds"])
        update += sum(v for _, _, v in tags["charts/update_seconds"])
    rollout, update = rollout / JOBLIB_WORKERS, update / JOBLIB_WORKERS
    return {"rollout": rollout, "update": update,
            "start-up, evaluation and the rest": run["wall_seconds"] - rollout - update}


def sb3_zoo_run(steps: int) -> Optional[dict]:
    """One rl-baselines3-zoo CartPole run (its tuned settings) in a fresh process, if SB3 is installed."""
    if not sb3_available():
        return None
    cmd = [sys.executable, "-c", SB3_WALL_SCRIPT, "CartPole-v1", str(steps), "1", json.dumps(SB3_ZOO_CARTPOLE)]
    wall, cpu, _ = _run_once(cmd, None, 1800.0)
    return {"command": "SB3 PPO, rl-baselines3-zoo CartPole-v1 settings, one fresh process", "steps": steps,
            "wall_seconds": wall, "cpu_seconds": cpu}


def compare(a: Sequence[float], b: Sequence[float]) -> dict:
    return {"population_mean": float(np.mean(a)), "solo_mean": float(np.mean(b)), "n": [len(a), len(b)],
            "p": permutation_test(a, b)}


def equivalence(tmp: Path, env: str, steps: Optional[int], seeds: Sequence[int]) -> dict:
    """``seeds`` of one config trained as one population and as solo runs (joblib): their final evaluations."""
    overrides = [f"env={env}", f"seed={','.join(map(str, seeds))}"] + \
        ([f"total_timesteps={steps}"] if steps is not None else [])
    got = {}
    for method in ("population", "joblib"):
        sweep_dir = tmp / f"equivalence-{env}-{slug(method)}"
        multirun(method, overrides, sweep_dir)
        got[method] = list(finals(sweep_dir).values())
    return {"env": env, "seeds": [seeds[0], seeds[-1]], **compare(got["population"], got["joblib"])}


def run_sweep(args) -> dict:
    """Run the sweep benchmark (``args`` from ``experiments.benchmark.parse_args``); print and return the results."""
    steps = args.steps or SWEEP_STEPS
    seeds = list(range(args.first_seed, args.first_seed + SEEDS_PER_POINT))
    overrides = [f"agent.clip_ratio={CLIPS}", f"agent.entropy_coef={ENTROPIES}", f"seed={','.join(map(str, seeds))}",
                 f"total_timesteps={steps}", *args.override]
    results: dict = {"mode": "sweep", "steps_per_run": steps, "runs": 48, "repeats": args.repeats,
                     "overrides": overrides, "methods": {}}
    with tempfile.TemporaryDirectory(prefix="ppo-sweep-bench-") as tmp_name:
        tmp = Path(tmp_name)
        walls: dict = {method: [] for method in METHODS}
        rss: dict = {method: [] for method in METHODS}
        last: dict = {}
        for r in range(args.repeats):
            for method in METHODS:
                sweep_dir = tmp / f"{slug(method)}-{r}"
                run = multirun(method, overrides, sweep_dir)
                walls[method].append(run["wall_seconds"])
                rss[method].append(run["peak_rss_mb"])
                print(f"  {method:24s} repeat {r + 1}/{args.repeats}: {run['wall_seconds']:.1f} s wall, peak RSS "
                      f"{run['peak_rss_mb']:.0f} MB", flush=True)
                last[method] = (run, sweep_dir)
        for method, (run, sweep_dir) in last.items():
            results["methods"][method] = {"command": run["command"], "wall_seconds": spread(walls[method]),
                                          "peak_rss_mb": spread(rss[method]),
                                          "phases_last_repeat": phases(method, run, sweep_dir)}
        results["speedup"] = ratio_spread(results["methods"]["joblib"]["wall_seconds"],
                                          results["methods"]["population"]["wall_seconds"])
        results["speedup_one_process"] = ratio_spread(results["methods"]["joblib"]["wall_seconds"],
                                                      results["methods"]["population, one process"]["wall_seconds"])
        pop, solo = finals(last["population"][1]), finals(last["joblib"][1])
        shared = sorted(pop.keys() & solo.keys())
        results["equivalence"] = {"sweep": compare([pop[k] for k in shared], [solo[k] for k in shared])}
        results["sb3_zoo_run"] = sb3_zoo_run(steps)
        if args.seeds:
            eq_seeds = list(range(args.first_seed, args.first_seed + args.seeds))
            results["equivalence"]["cartpole"] = equivalence(tmp, "cartpole", steps, eq_seeds)
            results["equivalence"]["bandit"] = equivalence(tmp, "bandit", None, eq_seeds)
    results["targets"] = sweep_targets(results)
    print(format_sweep(results))
    return results


def sweep_targets(results: dict) -> list[dict]:
    pop = results["methods"]["population"]
    rows = [{"target": f"population sweep ≥ {TARGET_SWEEP_SPEEDUP:g}× faster than joblib (2 workers), wall",
             "value": results["speedup"]["median"], "ok": results["speedup"]["median"] >= TARGET_SWEEP_SPEEDUP},
            {"target": f"population sweep peak RSS < {TARGET_SWEEP_RSS_MB:g} MB",
             "value": pop["peak_rss_mb"]["median"], "ok": pop["peak_rss_mb"]["median"] < TARGET_SWEEP_RSS_MB}]
    sb3 = results.get("sb3_zoo_run")
    if sb3 is not None:
        rows.append({"target": "population sweep shorter than ONE SB3 rl-zoo CartPole run",
                     "value": pop["wall_seconds"]["median"] / sb3["wall_seconds"],
                     "ok": pop["wall_seconds"]["median"] < sb3["wall_seconds"]})
    return rows


def format_sweep(results: dict) -> str:
    lines = [f"\nSweep benchmark: 48 runs (4 clip ratios × 4 entropy coefs × 3 seeds), tuned CartPole, "
             f"{results['steps_per_run']:,} steps each, {results['repeats']} repeat(s)"]
    for method, row in results["methods"].items():
        w, m = row["wall_seconds"], row["peak_rss_mb"]
        lines.append(f"  {method:24s} wall {w['median']:.1f} s (min {w['min']:.1f}, max {w['max']:.1f}); peak RSS "
                     f"{m['median']:.0f} MB")
        lines.append(" " * 27 + ", ".join(f"{k} {v:.1f} s" if isinstance(v, float) else f"{k} {v}"
                                                for k, v in row["phases_last_repeat"].items()))
    s = results["speedup"]
    lines.append(f"  speed-up (joblib wall / population wall): {s['median']:.2f}× "
                 f"(range {s['min']:.2f}–{s['max']:.2f})")
    if "speedup_one_process" in results:
        s = results["speedup_one_process"]
        lines.append(f"  speed-up of the one-process population: {s['median']:.2f}× "
                     f"(range {s['min']:.2f}–{s['max']:.2f})")
    if results.get("sb3_zoo_run"):
        lines.append(f"  one SB3 rl-zoo CartPole run: {results['sb3_zoo_run']['wall_seconds']:.1f} s wall")
    for name, eq in results["equivalence"].items():
        lines.append(f"  equivalence {name}: population mean {eq['population_mean']:.2f}, solo mean "
                     f"{eq['solo_mean']:.2f}, n={eq['n']}, permutation p={eq['p']:.3f}")
    for t in results["targets"]:
        lines.append(f"  [{'PASS' if t['ok'] else 'MISS'}] {t['target']}: {t['value']:.2f}")
    return "\n".join(lines)
