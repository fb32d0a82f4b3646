"""The population-size benchmark: ``python -m experiments.benchmark --mode scale``.

How a population's cost grows with its size, on each device: for every ``--members`` P and every ``--devices`` D,
one real Hydra multirun in a fresh process trains P seeds of the tuned CartPole config (``--steps`` each, default
100k) with ``hydra/launcher=population hydra.launcher.max_members=P device=D``, as a user would run it:

- ``cpu``: ``hydra.launcher.n_jobs=<CPUs> torch_threads=1`` (the launcher's setting for a CPU: one population per
  core, ``P / CPUs`` members each);
- ``cuda``: one population of P members in one process, its networks and update on the GPU (``device=cuda``);
  with ``--gpu-workers N``, N worker processes of P/N members each, sharing the GPU, each rollout on a core.

Per run: wall seconds, where they went (rollout, update, evaluation, and the rest: start-up, composing P jobs,
logging, checkpoints; from the trainers' log lines), peak resident memory of the largest process, the GPU's peak
allocated memory, and the members' final deterministic evaluations (mean, and how many reach 475). The final
evaluation has ``--eval-episodes`` episodes per member (default 10 here: P × 100 CartPole episodes would be most of
the run). Seeds start at ``--first-seed`` (default 1000: the tuned config was tuned on seeds 0–39).

**Device parity** (for each device other than ``cpu``): the same solo run (tuned CartPole, seed ``--first-seed``)
trained on the CPU and on the device, compared iteration by iteration: the largest relative difference of the
logged losses at the first iteration (same weights, same rollout: float rounding of the update alone), and the
first iteration whose logged values differ by more than 1e-3 (where rounding has grown into a different
trajectory: an action flips, and from there the runs are two samples of the same process).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from experiments.benchmark.common import BenchmarkError
from experiments.benchmark.sweep import multirun, phases

SCALE_STEPS = 100_000
SCALE_EVAL_EPISODES = 10
SOLVED = 475.0
FINAL_EVAL = re.compile(r"eval: mean_return=(-?[0-9.]+|nan)")
GPU_PEAK = re.compile(r"GPU memory peak ([0-9.]+) MB")


def worker_count(device: str, cpus: int, gpu_workers: int = 1) -> int:
    """Worker processes of one run: on a CPU one population per core, on a GPU ``gpu_workers`` populations (all P
    in one by default)."""
    return cpus if device == "cpu" else gpu_workers


def launcher(device: str, cpus: int, members: int, gpu_workers: int = 1) -> list[str]:
    """The launcher overrides of one run (``worker_count`` populations)."""
    workers = worker_count(device, cpus, gpu_workers)
    return ["hydra/launcher=population", f"hydra.launcher.n_jobs={workers}", f"hydra.launcher.max_members={members}",
            "torch_threads=1"]


def member_finals(sweep_dir: Path) -> list[float]:
    """Each job's final evaluation, read from its ``train.log`` (P TensorBoard reads would take longer)."""
    out = []
    for log in sorted(sweep_dir.glob("*/train.log")):
        found = FINAL_EVAL.findall(log.read_text())
        if found:
            out.append(float(found[-1]))
    return out


PARITY_TAGS = ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl")


def device_parity(device: str, seed: int, iterations: int = 20) -> dict:
    """The solo run of ``seed`` on the CPU and on ``device``: how far apart their logged losses are."""
    from agents.api import PPO

    logged: dict = {}
    for where in ("cpu", device):
        rows: list = []
        model = PPO.tuned("cartpole", seed=seed, device=where, eval_episodes=0)
        model.learn(iterations * model.trainer.batch_size,
                    callbacks=lambda info: rows.append([info.metrics[t] for t in PARITY_TAGS]))
        logged[where] = np.array(rows)
    cpu, other = logged["cpu"], logged[device]
    rel = np.abs(cpu - other) / np.maximum(np.abs(cpu), 1e-8)
    apart = np.flatnonzero(rel.max(axis=1) > 1e-3)
    return {"device": device, "seed": seed, "iterations": iterations, "tags": list(PARITY_TAGS),
            "first_iteration_max_rel_diff": float(rel[0].max()),
            "first_iteration_apart": int(apart[0]) + 1 if len(apart) else None}


def run_scale(args) -> dict:
    """Run the scale benchmark (``args`` from ``experiments.benchmark.parse_args``); print and return the results."""
    steps = args.steps or SCALE_STEPS
    episodes = args.eval_episodes or SCALE_EVAL_EPISODES
    cpus = os.cpu_count() or 1
    results: dict = {"mode": "scale", "steps_per_member": steps, "eval_episodes": episodes, "cpus": cpus,
                     "runs": [], "parity": [device_parity(d, args.first_seed) for d in args.devices if d != "cpu"]}
    for row in results["parity"]:
        print(format_parity(row), flush=True)
    with tempfile.TemporaryDirectory(prefix="ppo-scale-bench-") as tmp_name:
        for members in args.members:
            for device in args.devices:
                sweep_dir = Path(tmp_name) / f"{device.replace(':', '')}-{members}"
                overrides = ["env=cartpole", f"seed=range({args.first_seed},{args.first_seed + members})",
                             f"total_timesteps={steps}", f"eval.episodes={episodes}", f"device={device}",
                             *args.override]
                run = multirun("population", overrides, sweep_dir, timeout=args.timeout,
                               launcher=launcher(device, cpus, members, args.gpu_workers))
                finals = member_finals(sweep_dir)
                if len(finals) != members:
                    raise BenchmarkError(f"scale: {len(finals)} of {members} members on {device} reported a final "
                                         f"evaluation; the multirun's output ends:\n{run['output'][-1500:]}")
                gpu = [float(x) for x in GPU_PEAK.findall(run["output"])]
                row = {"members": members, "device": device, "workers": worker_count(device, cpus, args.gpu_workers),
                       "command": run["command"],
                       "wall_seconds": run["wall_seconds"], "cpu_seconds": run["cpu_seconds"],
                       "peak_rss_mb": run["peak_rss_mb"], "gpu_peak_mb": max(gpu) if gpu else None,
                       "phases": phases("population", run, sweep_dir),
                       "final_eval_mean": float(np.mean(finals)), "solved": int(sum(f >= SOLVED for f in finals)),
                       "env_steps_per_second": members * steps / run["wall_seconds"]}
                results["runs"].append(row)
                print(format_row(row), flush=True)
    print(format_scale(results))
    return results


def format_row(row: dict) -> str:
    ph = row["phases"]
    gpu = "" if row["gpu_peak_mb"] is None else f", GPU peak {row['gpu_peak_mb']:.0f} MB"
    return (f"  P={row['members']:<5d} {row['device']:6s} {row['workers']:>2d} worker(s) "
            f"wall {row['wall_seconds']:7.1f} s "
            f"({row['wall_seconds'] / row['members']:.3f} s/member, {row['env_steps_per_second']:,.0f} env steps/s): "
            f"rollout {ph['rollout']:.1f}, update {ph['update']:.1f}, evaluation {ph['evaluation']:.1f}, rest "
            f"{ph['start-up and the rest']:.1f} s; peak RSS {row['peak_rss_mb'] or float('nan'):.0f} MB{gpu}; "
            f"final eval mean {row['final_eval_mean']:.1f}, {row['solved']}/{row['members']} ≥ {SOLVED:g}")


def format_parity(row: dict) -> str:
    apart = row["first_iteration_apart"]
    return (f"  parity cpu vs {row['device']} (solo run, seed {row['seed']}): iteration 1 losses within "
            f"{row['first_iteration_max_rel_diff']:.1e} (relative); "
            + (f"first > 1e-3 apart at iteration {apart}" if apart else
               f"within 1e-3 for all {row['iterations']} iterations"))


def format_scale(results: dict) -> str:
    lines = [f"\nScale benchmark: tuned CartPole, {results['steps_per_member']:,} steps per member, "
             f"{results['eval_episodes']} final evaluation episodes per member, {results['cpus']} CPUs"]
    lines += [format_parity(row) for row in results["parity"]]
    lines += [format_row(row) for row in results["runs"]]
    return "\n".join(lines)
