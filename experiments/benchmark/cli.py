"""Speed benchmarks: throughput, time-to-solve, peak memory and learning-curve parity (console script
``ppo-benchmark``).

Examples::

    python -m experiments.benchmark                                  # every report, CartPole-v1
    python -m experiments.benchmark --mode throughput --no-sb3
    python -m experiments.benchmark --mode throughput --cleanrl-script ~/cleanrl/ppo.py \\
        --cleanrl-python ~/cleanrl/.venv/bin/python                 # CleanRL's ppo.py run live, side by side
    python -m experiments.benchmark --mode solve --seeds 10 --override agent.learning_rate=2e-3
    python -m experiments.benchmark --mode parity --seeds 10 --steps 50000 --json parity.json
    python -m experiments.benchmark --mode scores --envs halfcheetah,hopper --seeds 3   # hours: not in --mode all
    python -m experiments.benchmark --mode scale --members 256,1024 --devices cpu,cuda   # population size × device

What each report measures is said in its module of ``experiments/benchmark/``: ``throughput``, ``solve``,
``memory`` and ``parity`` (``--mode all``), ``scores`` (hours), ``sweep`` and ``scale`` (tens of minutes), only
when asked.
This module reads the arguments, runs the reports asked for, prints the table (``report``) and writes the JSON.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from experiments.benchmark.cleanrl import check_cleanrl
from experiments.benchmark.common import (FIRST_SEED, TUNED_SEEDS, BenchmarkError, _freshness, _seed_range,
                                          compose_train_config, env_overrides, fail, machine, save_json,
                                          solve_seeds)
from experiments.benchmark.memory import report_memory
from experiments.benchmark.parity import report_parity
from experiments.benchmark.report import format_report, targets
from experiments.benchmark.sb3 import sb3_available, sb3_version
from experiments.benchmark.solve import report_solve
from experiments.benchmark.throughput import WALL_STEPS, report_throughput

MODES = ("throughput", "solve", "memory", "parity")  # --mode all
SCORES_MODE = "scores"  # experiments/benchmark/scores.py; hours long, so never part of --mode all
SWEEP_MODE = "sweep"  # experiments/benchmark/sweep.py: a 48-run sweep, population vs joblib (tens of minutes)
SCALE_MODE = "scale"  # experiments/benchmark/scale.py: population size × device


class _OneLineParser(argparse.ArgumentParser):
    """Argument mistakes as one ``error:`` line (exit 2), like every other refusal of the package."""

    def error(self, message: str):
        fail(message)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = _OneLineParser(prog="ppo-benchmark", description=__doc__.split("\n\n")[0],
                       epilog="\n\n".join(__doc__.split("\n\n")[1:3]),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES + (SCORES_MODE, SWEEP_MODE, SCALE_MODE, "all"), default="all",
                   help="all = throughput, solve, memory and parity; scores (hours) and sweep (population vs "
                        "joblib on a 48-run sweep) only when asked")
    p.add_argument("--env", default="CartPole-v1", help="Gymnasium id (default CartPole-v1)")
    p.add_argument("--steps", type=int, default=None,
                   help="env steps per run (default: 50k throughput, 100k solve budget and parity, "
                        "the config's total_timesteps for memory and scores)")
    p.add_argument("--seeds", type=int, default=None, help="seeds for solve and parity (default 10) and scores "
                                                            "(default 3)")
    p.add_argument("--first-seed", type=int, default=FIRST_SEED,
                   help=f"first seed of solve, parity and scores, also the seed of the throughput and memory runs "
                        f"(default {FIRST_SEED}: the tuned CartPole config was tuned on seeds "
                        f"{TUNED_SEEDS.start}-{TUNED_SEEDS.stop - 1}, so default seeds are {FIRST_SEED}..)")
    p.add_argument("--repeats", type=int, default=3,
                   help="in-process throughput runs and memory runs per setting; the median and min-max are "
                        "reported (default 3)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="Hydra override of our config (repeatable), e.g. --override agent.learning_rate=2e-3; "
                        "not applied to the CleanRL reference settings")
    p.add_argument("--no-sb3", action="store_true", help="do not run Stable-Baselines3 even if it is installed")
    p.add_argument("--cleanrl-script", type=Path, default=None, metavar="PATH",
                   help="CleanRL's own cleanrl/ppo.py (fetched outside this repository, never committed): run it "
                        "live at its CartPole defaults for --wall-steps, timed as whole processes like ours. "
                        "Without it, CleanRL's documented figure (~17 s for 50k steps) is shown, labelled as such")
    p.add_argument("--cleanrl-python", default=sys.executable, metavar="PATH",
                   help="Python interpreter of an environment where CleanRL's ppo.py runs (it pins gymnasium "
                        "0.29.1, e.g. ~/cleanrl/.venv/bin/python; default: this interpreter)")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the JSON results (default outputs/benchmark/<time>.json; scores: "
                        "<out>/scores.json)")
    p.add_argument("--wall-runs", type=int, default=3,
                   help="fresh-process runs of each library for the wall-clock-including-start-up figure, "
                        "interleaved; their median and min-max are reported (0 = skip; default 3)")
    p.add_argument("--wall-steps", type=int, default=WALL_STEPS,
                   help=f"env steps of each wall-clock run (default {WALL_STEPS:,}; CleanRL's documented figure "
                        "and the wall target are for 50,000)")
    p.add_argument("--eval-every-steps", type=int, default=2048,
                   help="time-to-solve: evaluate every this many env steps, both libraries (default 2048)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="episodes per evaluation (default 100; scores: 100 for cheap tasks, 10 for MuJoCo ones)")
    p.add_argument("--envs", default=None, metavar="WORD[,WORD...]",
                   help="scores: tasks to train, config names of conf/env/ (e.g. cartpole,acrobot,halfcheetah), "
                        "or 'all' (every one with a published anchor)")
    p.add_argument("--jobs", type=int, default=2,
                   help="scores: training processes at a time (default 2; each a run, or with --population a "
                        "task's population; the last population to start also gets the slots left as workers)")
    p.add_argument("--generic", action="store_true",
                   help="scores: train each task's env and budget with the generic defaults of env=gym (what "
                        "'python -m experiments.train env=gym env.id=<id>' uses) instead of its tuned config")
    p.add_argument("--population", action="store_true",
                   help="scores: train a task's seeds as one population (hydra/launcher=population) in one "
                        "process, instead of one process per seed; interrupted members resume together")
    p.add_argument("--out", type=Path, default=Path("outputs") / "scores",
                   help="scores: where the runs go, as <out>/<word>/seed=<seed>/, with scores.json, scores.md and "
                        "<word>/learning_curves.png (default outputs/scores); rerun into the same --out to "
                        "continue a stopped benchmark")
    p.add_argument("--members", type=_positive_ints, default=[48, 256], metavar="P[,P...]",
                   help="scale: population sizes (default 48,256)")
    p.add_argument("--devices", type=_devices, default=["cpu"], metavar="DEVICE[,DEVICE...]",
                   help="scale: where each population trains: cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--gpu-workers", type=int, default=1, metavar="N",
                   help="scale: worker processes of a GPU run (hydra.launcher.n_jobs), each a population of P/N "
                        "members whose update shares the GPU and whose rollout runs on a core of its own "
                        "(default 1)")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="scale: seconds one multirun may take (default 3600)")
    p.add_argument("--solve-return", type=float, default=None,
                   help="time-to-solve threshold (default: the env's reward_threshold, 475 for CartPole-v1)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for name in ("steps", "seeds", "eval_every_steps", "eval_episodes", "repeats", "wall_steps", "jobs",
                 "gpu_workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1")
    if args.wall_runs < 0:
        p.error("--wall-runs must be ≥ 0")
    if args.first_seed < 0:
        p.error("--first-seed must be ≥ 0")
    if args.seeds is None:
        args.seeds = {SCORES_MODE: 3, SWEEP_MODE: 20}.get(args.mode, 10)
    if args.population and args.mode != SCORES_MODE:
        p.error(f"--population is for --mode {SCORES_MODE} (the sweep mode times the population launcher itself)")
    if args.generic and args.mode != SCORES_MODE:
        p.error(f"--generic is for --mode {SCORES_MODE}")
    if args.eval_episodes is None and args.mode not in (SCORES_MODE, SCALE_MODE):  # they pick their own
        args.eval_episodes = 100
    return args


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be ≥ 1")
    return values


def _devices(text: str) -> list[str]:
    from agents.config import ConfigError
    from agents.run_config import require_device

    devices = text.split(",")
    for device in devices:
        try:
            require_device(device)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return devices


def run_timed_mode(args, run, name: str) -> dict:
    """``--mode sweep`` / ``scale``: run it, then write its JSON with when and where it was measured."""
    try:
        results = run(args)
    except BenchmarkError as exc:
        fail(str(exc), 1)
    results["meta"] = {"argv": args.argv, "machine": machine(), "torch": torch.__version__,
                       "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                       "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    write_json(args.json or Path("outputs") / "benchmark" / f"{name}-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json",
               results)
    return results


def run_benchmark(argv: Optional[Sequence[str]] = None) -> dict:
    """Parse ``argv``, run the reports, print the table, write the JSON; returns the results."""
    import gymnasium as gym

    from agents.config import ConfigError
    from envs.vector import make_vec_env

    args = parse_args(argv)
    if args.mode == SCORES_MODE:
        from experiments.benchmark.scores import run_scores

        return run_scores(args)
    if args.mode == SWEEP_MODE:
        from experiments.benchmark.sweep import run_sweep

        return run_timed_mode(args, run_sweep, "sweep")
    if args.mode == SCALE_MODE:
        from experiments.benchmark.scale import run_scale

        return run_timed_mode(args, run_scale, "scale")
    modes = MODES if args.mode == "all" else (args.mode,)
    sb3 = sb3_available() and not args.no_sb3
    our_overrides = env_overrides(args.env) + list(args.override)
    try:
        cleanrl = check_cleanrl(args)
        threshold = gym.spec(args.env).reward_threshold
        target = args.solve_return if args.solve_return is not None else float(threshold or "nan")
        tc = compose_train_config(our_overrides)
        make_vec_env(tc.env, 1).close()  # refuses unsupported spaces before any measurement
        batch = tc.agent.batch_size(tc.env.num_envs)
        if args.steps is not None and args.steps < batch:
            raise ConfigError(f"--steps={args.steps} is invalid: must be ≥ one batch of the config, "
                              f"env.num_envs×agent.num_steps = {batch}")
        if args.json is not None and args.json.exists() and args.json.is_dir():
            raise ConfigError(f"--json={str(args.json)!r} is invalid: it is a folder, give a file path")
    except (ConfigError, BenchmarkError, gym.error.Error) as exc:
        fail(str(exc))
    if cleanrl and "throughput" not in modes:
        print("note: --cleanrl-script is used by the throughput report only", file=sys.stderr)
    seeds = solve_seeds(args)
    if {"solve", "parity"} & set(modes) and set(seeds) & set(TUNED_SEEDS):
        print(f"note: seeds {_seed_range(seeds)} are {_freshness(seeds)}: their scores flatter it", file=sys.stderr)
    torch.set_num_threads(tc.torch_threads)
    load_start = os.getloadavg()[0]
    results: dict = {"meta": {
        "env": args.env, "argv": list(sys.argv[1:] if argv is None else argv), "overrides": list(args.override),
        "python": platform.python_version(), "torch": torch.__version__, "gymnasium": gym.__version__,
        "stable_baselines3": sb3_version() if sb3 else None, "cpus": os.cpu_count(), "machine": machine(),
        "torch_threads": tc.torch_threads, "seeds": seeds, "seeds_fresh": not set(seeds) & set(TUNED_SEEDS),
        "tuned_seeds": f"{TUNED_SEEDS.start}-{TUNED_SEEDS.stop - 1}",
        "load_start": load_start, "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}}
    try:
        if "throughput" in modes:
            results["throughput"] = report_throughput(args, our_overrides, sb3, cleanrl)
        if "solve" in modes:
            if math.isnan(target):
                print(f"note: {args.env} has no reward_threshold and no --solve-return: time-to-solve skipped",
                      file=sys.stderr)
            else:
                results["solve"] = report_solve(args, our_overrides, sb3, target)
        if "memory" in modes:
            results["memory"] = report_memory(args, our_overrides)
        if "parity" in modes:
            results["parity"] = report_parity(args, our_overrides)
    except BenchmarkError as exc:
        fail(str(exc), 1)
    load_end = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    # The benchmark itself keeps about one CPU busy (CleanRL run live: every CPU, and the 1-minute load average
    # still shows it at the end): more than that, plus a margin, means other processes ran.
    own = cpus if results.get("throughput", {}).get("cleanrl", {}).get("live") else 1.0
    results["meta"].update(load_end=load_end, busy=load_start > 1.0 + 0.25 * cpus or load_end > own + 0.25 * cpus)
    results["targets"] = targets(results)
    print(format_report(results))
    write_json(args.json or Path("outputs") / "benchmark" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}.json", results)
    return results


def write_json(path: Path, results: dict) -> None:
    try:
        save_json(path, results)
    except OSError as exc:
        fail(f"cannot write --json {str(path)!r}: {exc.strerror or exc}")
    print(f"\nJSON: {path}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_benchmark(argv)
