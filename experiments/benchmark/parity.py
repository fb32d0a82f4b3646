"""``--mode parity``: the fast path (``agent.rollout_backend=numpy``) against the plain nn.Module path (``torch``) at
the same hyperparameters and seeds (the same fresh seeds as solve): evaluation returns at fixed steps and at the
end, compared with a two-sample permutation test, and the largest difference between the first iteration's logged
losses (same data)."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from experiments.benchmark.common import (_fmt, _freshness, _range, _seed_range, compose_train_config, describe,
                                          permutation_test, solve_seeds, spread, target_row, welch_t)
from experiments.benchmark.ours import train_ours

PARITY_ALPHA = 0.05
PARITY_LOSS_TOL = 1e-5


def parity(tc, seeds: Sequence[int], steps: int, episodes: int, points: int = 4) -> dict:
    """Both rollout backends, same seeds and hyperparameters: evaluations at ``points`` fixed steps (the last is
    the final evaluation) and the first iteration's logged losses."""
    batch = tc.agent.batch_size(tc.env.num_envs)
    every = max(1, math.ceil((steps // batch) / points))  # evaluations at ~¼, ½, ¾ and the final one
    runs: dict = {}
    for backend in ("numpy", "torch"):
        btc = dataclasses.replace(tc, agent=dataclasses.replace(tc.agent, rollout_backend=backend))
        runs[backend] = []
        for seed in seeds:
            run = train_ours(btc, steps, seed, eval_every=every, eval_episodes=episodes)
            runs[backend].append({"seed": seed, "evals": run["evals"], "losses": run["recorder"].first("losses/"),
                                  "train_seconds": run["wall_seconds"] - run["eval_seconds"]})
    at_steps = [step for step, _ in runs["numpy"][0]["evals"]]
    comparisons = []
    for i, step in enumerate(at_steps):
        fast = [r["evals"][i][1] for r in runs["numpy"]]
        plain = [r["evals"][i][1] for r in runs["torch"]]
        comparisons.append({"step": step, "numpy_mean": float(np.mean(fast)), "torch_mean": float(np.mean(plain)),
                            "numpy": fast, "torch": plain, "p_value": permutation_test(fast, plain),
                            "welch_t": welch_t(fast, plain)})
    loss_diff = max((abs(a["losses"][k] - b["losses"][k]) for a, b in zip(runs["numpy"], runs["torch"])
                     for k in a["losses"]), default=float("nan"))
    return {"config": describe(tc), "seeds": list(seeds), "steps": steps, "eval_episodes": episodes,
            "comparisons": comparisons, "first_iteration_loss_max_abs_diff": loss_diff,
            "train_seconds": {b: [r["train_seconds"] for r in rs] for b, rs in runs.items()}}


def report_parity(args, our_overrides: list[str]) -> dict:
    tc = compose_train_config(our_overrides)
    return parity(tc, solve_seeds(args), args.steps or 100_000, args.eval_episodes)


def parity_targets(par: dict) -> list[dict]:
    rows = []
    if par["comparisons"]:
        rows.append(target_row("parity: final eval return, numpy vs torch (p)", par["comparisons"][-1]["p_value"],
                               ">=", PARITY_ALPHA, "permutation test"))
    rows.append(target_row("parity: first-iteration losses, max |Δ|", par["first_iteration_loss_max_abs_diff"], "<=",
                           PARITY_LOSS_TOL))
    return rows


def format_parity(par: dict) -> list[str]:
    lines = ["", f"PARITY rollout_backend numpy (fast path) vs torch (nn.Module), seeds "
                 f"{_seed_range(par['seeds'])} ({_freshness(par['seeds'])}), {par['eval_episodes']}-episode "
                 "deterministic eval",
             f"  {'step':>8}{'numpy mean':>12}{'(min–max)':>16}{'torch mean':>12}{'(min–max)':>16}"
             f"{'perm. p':>9}{'Welch t':>9}"]
    for c in par["comparisons"]:
        fast, plain = spread(c["numpy"]), spread(c["torch"])
        lines.append(f"  {c['step']:>8,}{c['numpy_mean']:>12.1f}{_range(fast, 1):>16}{c['torch_mean']:>12.1f}"
                     f"{_range(plain, 1):>16}{c['p_value']:>9.3f}{_fmt(c['welch_t']):>9}")
    for backend, seconds in par["train_seconds"].items():
        t = spread(seconds)
        lines.append(f"  train seconds per seed, {backend}: median {t['median']:.2f} ({_range(t)})")
    lines.append(f"  first iteration's logged losses, max |numpy − torch|: "
                 f"{par['first_iteration_loss_max_abs_diff']:.2e}")
    return lines
