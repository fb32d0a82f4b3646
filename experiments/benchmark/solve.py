"""``--mode solve``: time-to-solve. Per seed, train with a deterministic 100-episode evaluation every
``--eval-every-steps`` env steps until its mean first reaches the env's reward threshold (475 for CartPole-v1); env
steps and training wall seconds *excluding evaluation time* (measured and subtracted, for both libraries); median
over seeds (an unsolved seed counts as infinitely slow) and how many seeds solved within ``--steps``. The seeds
start at ``--first-seed`` (default 1000): the tuned CartPole config was tuned on seeds 0–39, so scores on those
would flatter it. SB3 PPO runs with the rl-zoo3 tuned CartPole-v1 hyperparameters and is evaluated by the same
evaluator (same envs and seeds).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Optional

import torch

from experiments.benchmark.common import (_fmt, _freshness, _range, _seed_range, compose_train_config, describe,
                                          solve_seeds, spread, target_row)
from experiments.benchmark.ours import train_ours
from experiments.benchmark.sb3 import SB3_ZOO_CARTPOLE, sb3_callback, sb3_inference, sb3_model

TARGET_SOLVE_RATIO = 0.25        # median time-to-solve ≤ ¼ of SB3 rl-zoo's
TARGET_SOLVED_SHARE = 0.9        # ≥ 9/10 seeds solve within the budget


def _solve_row(seed: int, solved_step: Optional[int], steps_done: int, wall: float, eval_seconds: float,
               evals: list, interval: int) -> dict:
    return {"seed": seed, "solved": solved_step is not None, "solved_step": solved_step, "steps_done": steps_done,
            "train_seconds": wall - eval_seconds, "eval_seconds": eval_seconds, "wall_seconds": wall,
            "evaluations": len(evals), "best_eval_return": max((m for _, m in evals), default=float("nan")),
            "eval_interval_steps": interval}


def solve_ours(tc, seed: int, budget: int, eval_every_steps: int, episodes: int, target: float) -> dict:
    batch = tc.agent.batch_size(tc.env.num_envs)
    every = max(1, round(eval_every_steps / batch))
    run = train_ours(tc, budget, seed, eval_every=every, eval_episodes=episodes, stop_return=target)
    result = run["result"]
    return _solve_row(seed, result.solved_step, result.global_step, run["wall_seconds"], run["eval_seconds"],
                      run["evals"], every * batch)


def eval_seed(seed: int, index: int):
    """The evaluation stream after iteration (for SB3: rollout) ``index`` of a run with ``seed``, drawn as
    ``Trainer.evaluate`` draws its own (``agents.seeding``), so both libraries are evaluated on the same episodes."""
    from agents.seeding import RunSeeds

    return RunSeeds(seed).evaluation(index)


def solve_sb3(env_id: str, seed: int, budget: int, eval_every_steps: int, episodes: int, target: float,
              threads: int = 1) -> dict:
    """SB3 PPO (rl-zoo CartPole settings), evaluated between rollouts every ``eval_every_steps`` env steps with the
    same evaluator as ours; training stops at the first evaluation that reaches ``target``."""
    from agents.evaluation import evaluate_policy
    from envs.vector import EnvConfig, make_vec_env

    per_rollout = SB3_ZOO_CARTPOLE["n_envs"] * SB3_ZOO_CARTPOLE["n_steps"]
    every = max(1, round(eval_every_steps / per_rollout))
    eval_env = EnvConfig(id=env_id)
    state: dict = {"rollouts": 0, "eval_seconds": 0.0, "evals": [], "solved_step": None}

    def evaluate(model) -> float:
        start = time.perf_counter()
        mean = evaluate_policy(sb3_inference(model), lambda n: make_vec_env(eval_env, n), episodes,
                               seed=eval_seed(seed, state["rollouts"])).mean
        state["eval_seconds"] += time.perf_counter() - start
        state["evals"].append((int(model.num_timesteps), mean))
        return mean

    def on_start(model) -> bool:  # runs after the previous update: evaluate what has been trained so far
        if state["rollouts"] and state["rollouts"] % every == 0 and evaluate(model) >= target:
            state["solved_step"] = int(model.num_timesteps)
            return True
        return False

    def on_end(model) -> None:
        state["rollouts"] += 1

    torch.set_num_threads(threads)
    wall0 = time.perf_counter()
    model = sb3_model(env_id, SB3_ZOO_CARTPOLE, seed)
    model.learn(budget, callback=sb3_callback(on_start, on_end))
    if state["solved_step"] is None and episodes > 0 and evaluate(model) >= target:  # final evaluation
        state["solved_step"] = int(model.num_timesteps)
    wall = time.perf_counter() - wall0
    return _solve_row(seed, state["solved_step"], int(model.num_timesteps), wall, state["eval_seconds"],
                      state["evals"], every * per_rollout)


def summarize_solve(rows: list[dict], budget: int) -> dict:
    """Median over seeds with an unsolved seed counted as infinitely slow (so the median is honest about it), and
    the spread (min / median / max over seeds, "inf" for an unsolved one) beside it."""
    inf = float("inf")
    steps = [r["solved_step"] if r["solved"] else inf for r in rows]
    seconds = [r["train_seconds"] if r["solved"] else inf for r in rows]
    return {"budget_steps": budget, "seeds": len(rows), "seed_list": [r["seed"] for r in rows],
            "solved": sum(r["solved"] for r in rows),
            "median_steps": statistics.median(steps) if rows else inf,
            "median_train_seconds": statistics.median(seconds) if rows else inf,
            "steps_to_solve": spread(steps), "train_seconds_to_solve": spread(seconds),
            "total_eval_seconds": sum(r["eval_seconds"] for r in rows), "per_seed": rows}


def _warm_up_solve(tc, env_id: str, sb3: bool, seed: int) -> None:
    """One short run of each library first, so that neither pays this process's one-off imports in a seed."""
    train_ours(tc, tc.agent.batch_size(tc.env.num_envs), seed, eval_every=1, eval_episodes=1)
    if sb3:
        solve_sb3(env_id, seed, SB3_ZOO_CARTPOLE["n_envs"] * SB3_ZOO_CARTPOLE["n_steps"], 1, 1, float("inf"),
                  tc.torch_threads)


def report_solve(args, our_overrides: list[str], sb3: bool, target: float) -> dict:
    budget = args.steps or 100_000
    tc = compose_train_config(our_overrides)
    sb3 = sb3 and args.env == "CartPole-v1"  # rl-zoo settings are the CartPole-v1 ones
    seeds = solve_seeds(args)
    _warm_up_solve(tc, args.env, sb3, seeds[0])
    ours = summarize_solve([solve_ours(tc, s, budget, args.eval_every_steps, args.eval_episodes, target)
                            for s in seeds], budget)
    out: dict = {"target_return": target, "eval_episodes": args.eval_episodes, "seeds": seeds,
                 "eval_every_steps": args.eval_every_steps, "ours": {"config": describe(tc), **ours}, "sb3": None,
                 "evaluation_time": "excluded: every evaluation is timed and subtracted (both libraries)"}
    if sb3:
        rows = [solve_sb3(args.env, s, budget, args.eval_every_steps, args.eval_episodes, target, tc.torch_threads)
                for s in seeds]
        out["sb3"] = {"config": dict(SB3_ZOO_CARTPOLE), **summarize_solve(rows, budget)}
        theirs = out["sb3"]["median_train_seconds"]
        mine = ours["median_train_seconds"]
        out["median_seconds_ratio"] = mine / theirs if math.isfinite(theirs) and theirs > 0 else float("nan")
    return out


def solve_targets(sv: dict) -> list[dict]:
    ours = sv["ours"]
    return [target_row("median time-to-solve vs SB3 rl-zoo (×)", sv.get("median_seconds_ratio"), "<=",
                       TARGET_SOLVE_RATIO, "" if sv["sb3"] else "SB3 not run"),
            target_row("seeds solved", ours["solved"], ">=",
                       math.ceil(TARGET_SOLVED_SHARE * ours["seeds"] - 1e-9),
                       f"of {ours['seeds']}, seeds {_seed_range(sv['seeds'])}")]


def format_solve(sv: dict) -> list[str]:
    lines = ["", f"TIME-TO-SOLVE (deterministic {sv['eval_episodes']}-episode eval ≥ {sv['target_return']:g}, "
                 f"budget {sv['ours']['budget_steps']:,} steps; evaluation time excluded for both libraries)",
             f"  seeds {_seed_range(sv['seeds'])} ({_freshness(sv['seeds'])})"]
    for key, label in (("ours", "ours (tuned default)"), ("sb3", "SB3 PPO (rl-zoo CartPole-v1)")):
        s = sv.get(key)
        if not s:
            continue
        interval = s["per_seed"][0]["eval_interval_steps"] if s["per_seed"] else 0
        lines.append(f"  {label}: eval every {interval:,} steps")
        lines.append(f"    {'seed':>6}{'solved at step':>16}{'train s':>10}{'eval s':>9}{'best eval':>11}")
        for r in s["per_seed"]:
            lines.append(f"    {r['seed']:>6}{_fmt(r['solved_step']) if r['solved'] else 'not solved':>16}"
                         f"{r['train_seconds']:>10.2f}{r['eval_seconds']:>9.2f}{r['best_eval_return']:>11.1f}")
        if math.isfinite(s["median_steps"]):
            median = (f"{_fmt(s['median_steps'], 0)} steps ({_range(s['steps_to_solve'], 0)}), "
                      f"{_fmt(s['median_train_seconds'])} s ({_range(s['train_seconds_to_solve'])})")
        else:
            median = "not solved (half the seeds or more did not solve)"
        lines.append(f"    median (min–max over seeds): {median}; solved {s['solved']}/{s['seeds']}")
    if sv.get("median_seconds_ratio") is not None:
        lines.append(f"  median time-to-solve, ours / SB3: {_fmt(sv['median_seconds_ratio'], 3)}")
    return lines
