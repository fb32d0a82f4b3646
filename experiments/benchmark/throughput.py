"""``--mode throughput``: env steps/s of a training run, split into rollout (acting + env steps), update (GAE,
batch, minibatch epochs) and other (logging, checks) time — at CleanRL's default CartPole settings, built
explicitly through Hydra overrides (``~tuned`` drops our tuned file, then every CleanRL value is set), and at our
tuned default; ``--repeats`` runs each (default 3). Also the wall clock of ``python -m experiments.train`` for 50k
steps at CleanRL's settings, *including Python start-up*, as a fresh process (``--wall-runs``, default 3).

With ``--cleanrl-script PATH`` (CleanRL's own ``cleanrl/ppo.py``, kept outside this repository) CleanRL runs live
the same way: whole-process wall time of ``ppo.py --total-timesteps 50000`` at its CartPole defaults, no tracking
or video, its ``runs/`` written to a temporary folder, interleaved with our runs, under ``--cleanrl-python`` (an
interpreter of an environment where it runs: it pins gymnasium 0.29.1). Without it, the CleanRL column is the
figure documented in the README ("Speed"), labelled as such: not a live run. Stable-Baselines3 PPO runs live with
the same settings when it is installed (``pip install -e .[bench]``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from experiments.benchmark.cleanrl import (CLEANRL_DOCUMENTED_LABEL, CLEANRL_OVERRIDES, cleanrl_command,
                                           cleanrl_documented, cleanrl_live)
from experiments.benchmark.common import (FIRST_SEED, _range, compose_train_config, describe, env_overrides,
                                          ratio_spread, run_walls, spread, target_row, train_command)
from experiments.benchmark.ours import train_ours
from experiments.benchmark.sb3 import SB3_CLEANRL, SB3_WALL_SCRIPT, sb3_callback, sb3_model

WALL_STEPS = 50_000
TARGET_SPEEDUP = 4.0             # ≥ 4× CleanRL's throughput at its settings (wall incl. start-up and steps/s)
TIMES = ("seconds", "cpu_seconds", "rollout_seconds", "update_seconds", "other_seconds", "steps_per_second")


def summarize_runs(config: dict, seed: int, runs: list[dict]) -> dict:
    """Repeated runs of one setting: each run as measured, and every figure's spread over the runs."""
    return {"config": config, "seed": seed, "repeats": len(runs), "steps": runs[0]["steps"], "runs": runs,
            **{key: spread([r[key] for r in runs]) for key in TIMES}}


def measure_throughput(tc, steps: int, seed: int = FIRST_SEED, repeats: int = 1) -> dict:
    """Steps/s of training (no evaluation), split into rollout, update and other time, ``repeats`` times with the
    same seed (so the spread is timing noise, not a different trajectory). One warm-up iteration first, so that
    one-off lazy imports are not counted (start-up is what the subprocess figure measures)."""
    train_ours(tc, tc.agent.batch_size(tc.env.num_envs), seed)
    runs = []
    for _ in range(repeats):
        run = train_ours(tc, steps, seed)
        seconds, done, rec = run["wall_seconds"], run["result"].global_step, run["recorder"]
        rollout, update = rec.total("charts/rollout_seconds"), rec.total("charts/update_seconds")
        runs.append({"steps": done, "seconds": seconds, "cpu_seconds": run["cpu_seconds"],
                     "rollout_seconds": rollout, "update_seconds": update,
                     "other_seconds": seconds - rollout - update, "steps_per_second": done / seconds})
    return summarize_runs(describe(tc), seed, runs)


def sb3_throughput(env_id: str, steps: int, seed: int = FIRST_SEED, threads: int = 1, repeats: int = 1) -> dict:
    """SB3 PPO at CleanRL's settings, in-process, ``repeats`` times; rollout time from its rollout callbacks, the
    rest is update."""
    torch.set_num_threads(threads)
    warm = sb3_model(env_id, SB3_CLEANRL, seed)  # first construction imports torch.optim's dependencies
    warm.learn(SB3_CLEANRL["n_envs"] * SB3_CLEANRL["n_steps"])
    runs = []
    for _ in range(repeats):
        marks: dict = {"rollout": 0.0, "t": 0.0}

        def start(model) -> bool:
            marks["t"] = time.perf_counter()
            return False

        def end(model) -> None:
            marks["rollout"] += time.perf_counter() - marks["t"]

        wall0, cpu0 = time.perf_counter(), time.process_time()
        model = sb3_model(env_id, SB3_CLEANRL, seed)
        model.learn(steps, callback=sb3_callback(start, end))
        seconds = time.perf_counter() - wall0
        done = int(model.num_timesteps)
        runs.append({"steps": done, "seconds": seconds, "cpu_seconds": time.process_time() - cpu0,
                     "rollout_seconds": marks["rollout"], "update_seconds": seconds - marks["rollout"],
                     "other_seconds": 0.0, "steps_per_second": done / seconds})
    return summarize_runs(dict(SB3_CLEANRL), seed, runs)


def report_throughput(args, our_overrides: list[str], sb3: bool, cleanrl: Optional[dict] = None) -> dict:
    """In-process throughput (ours at CleanRL's settings and at our tuned default, SB3 when installed) and the
    whole-process wall clock of ours, SB3 and — when ``cleanrl`` ({"script", "python", "versions"}) is given —
    CleanRL's own ppo.py. Without it the CleanRL column is the documented figure."""
    steps = args.steps or 50_000
    cleanrl_tc = compose_train_config(env_overrides(args.env) + list(CLEANRL_OVERRIDES))
    tuned = compose_train_config(our_overrides)
    seed, wall_steps = args.first_seed, args.wall_steps
    out: dict = {"overrides_cleanrl": list(CLEANRL_OVERRIDES), "seed": seed, "repeats": args.repeats,
                 "wall_runs": args.wall_runs, "wall_steps": wall_steps, "wall_ours_cleanrl": None,
                 "wall_sb3_cleanrl": None, "sb3_cleanrl": None}
    # Whole processes first: CleanRL (the likeliest to fail) leads each round of the interleaved runs.
    walls: dict = {}
    if args.wall_runs > 0:
        with tempfile.TemporaryDirectory(prefix="ppo-bench-") as tmp:
            commands: dict = {}
            if cleanrl:
                cwd = Path(tmp) / "cleanrl"  # ppo.py writes runs/<name>/ (TensorBoard) under its working folder
                cwd.mkdir()
                commands["cleanrl"] = {"cmd": cleanrl_command(cleanrl["python"], cleanrl["script"], wall_steps),
                                       "cwd": str(cwd)}
            commands["ours"] = {"cmd": train_command(env_overrides(args.env) + list(CLEANRL_OVERRIDES)
                                                     + [f"total_timesteps={wall_steps}", "eval.episodes=0"],
                                                     str(Path(tmp) / "ours"))}
            if sb3:
                commands["sb3"] = {"cmd": [sys.executable, "-c", SB3_WALL_SCRIPT, args.env, str(wall_steps),
                                           str(cleanrl_tc.torch_threads), json.dumps(SB3_CLEANRL)]}
            walls = run_walls(commands, args.wall_runs, wall_steps)
        if "cleanrl" in walls:
            out["cleanrl"] = cleanrl_live(walls["cleanrl"], cleanrl["script"], cleanrl["python"],
                                          cleanrl["versions"])
        for name, wall in walls.items():
            wall.pop("stdout")  # CleanRL prints every episode: not for the JSON
        out["wall_ours_cleanrl"] = walls.get("ours")
        out["wall_sb3_cleanrl"] = walls.get("sb3")
    if "cleanrl" not in out:
        out["cleanrl"] = cleanrl_documented()

    out["ours_cleanrl"] = measure_throughput(cleanrl_tc, steps, seed, args.repeats)
    out["ours_tuned"] = measure_throughput(tuned, steps, seed, args.repeats)
    if sb3:
        out["sb3_cleanrl"] = sb3_throughput(args.env, steps, seed, cleanrl_tc.torch_threads, args.repeats)

    ref = out["cleanrl"]
    reference = "CleanRL live" if ref["live"] else "CleanRL documented, not run"
    ours = out["ours_cleanrl"]
    ratios: dict = {}
    if ref["steps_per_second"]:
        ratios["steps_per_second_vs_cleanrl"] = {
            **ratio_spread(ours["steps_per_second"], ref["steps_per_second"]), "reference": reference}
    wall_ours = out["wall_ours_cleanrl"]
    if wall_ours and (ref["live"] or wall_steps == ref["steps"]):  # the documented figure is for 50k steps only
        ratios["wall_vs_cleanrl"] = {**ratio_spread(ref["wall_seconds"], wall_ours["wall_seconds"]),
                                     "reference": reference}
    if out["sb3_cleanrl"]:
        ratios["steps_per_second_vs_sb3"] = {
            **ratio_spread(ours["steps_per_second"], out["sb3_cleanrl"]["steps_per_second"]), "reference": "SB3 live"}
    if wall_ours and out["wall_sb3_cleanrl"]:
        ratios["wall_vs_sb3"] = {**ratio_spread(out["wall_sb3_cleanrl"]["wall_seconds"], wall_ours["wall_seconds"]),
                                 "reference": "SB3 live"}
    out["ratios"] = ratios
    return out


def throughput_targets(tp: dict) -> list[dict]:
    """The CleanRL targets, compared with CleanRL run live when it was, else with its documented figure."""
    rows = []
    ref = tp["cleanrl"]
    which = (f"CleanRL run live, median of {ref['runs']}" if ref["live"]
             else f"CleanRL's DOCUMENTED ~{ref['wall_seconds']['median']:g} s, not a live run")
    wall = tp.get("wall_ours_cleanrl")
    if wall and "wall_vs_cleanrl" in tp["ratios"]:
        theirs = ref["wall_seconds"]["median"]
        rows.append(target_row(f"{tp['wall_steps']:,} steps @ CleanRL settings, wall incl. start-up (s)",
                               wall["wall_seconds"]["median"], "<=", theirs / TARGET_SPEEDUP,
                               f"= {which}: {theirs:.2f} s / {TARGET_SPEEDUP:g}"))
    sps = tp["ratios"].get("steps_per_second_vs_cleanrl")
    basis = ref["steps_per_second_basis"]
    against = "CleanRL live" if ref["live"] else "CleanRL documented, not run"
    rows.append(target_row("steps/s @ CleanRL settings vs CleanRL's (×)", sps["median"] if sps else None, ">=",
                           TARGET_SPEEDUP, f"ours in-process vs {against}: {basis}"))
    return rows


def format_throughput(tp: dict) -> list[str]:
    lines = ["", f"THROUGHPUT — training loop in-process, evaluation off, seed {tp['seed']}, each run "
                 f"{tp['repeats']}× after one uncounted warm-up iteration: median of the repeats, steps/s "
                 "also min–max",
             f"  {'run':<32}{'steps':>8}{'wall s':>8}{'rollout':>9}{'update':>8}{'other':>7}{'steps/s':>9}"
             f"{'(min–max)':>18}{'CPU s':>7}"]
    for key, label in (("ours_cleanrl", "ours @ CleanRL settings"), ("ours_tuned", "ours @ tuned default"),
                       ("sb3_cleanrl", "SB3 PPO @ CleanRL settings")):
        r = tp.get(key)
        if r:
            lines.append(f"  {label:<32}{r['steps']:>8,}{r['seconds']['median']:>8.2f}"
                         f"{r['rollout_seconds']['median']:>9.2f}{r['update_seconds']['median']:>8.2f}"
                         f"{r['other_seconds']['median']:>7.2f}{r['steps_per_second']['median']:>9,.0f}"
                         f"{_range(r['steps_per_second'], 0):>18}{r['cpu_seconds']['median']:>7.2f}")
    ref = tp["cleanrl"]
    if ref["live"] and ref["steps_per_second"]:
        s = ref["steps_per_second"]
        lines.append(f"  {'CleanRL ppo.py (live)':<32}{'':>40}{s['median']:>9,.0f}{_range(s, 0):>18}"
                     f"   (its own SPS print: training loop only)")
    elif ref["live"]:
        lines.append("  CleanRL ppo.py (live): printed no 'SPS:' line, so no in-loop steps/s")
    else:
        lines.append(f"  {CLEANRL_DOCUMENTED_LABEL}: ~{ref['steps_per_second']['median']:,.0f} steps/s "
                     "= 50k steps / ~17 s whole-process wall (start-up included), spread unknown")
    if tp.get("wall_ours_cleanrl"):
        lines += ["", f"WALL CLOCK — {tp['wall_steps']:,} env steps at CleanRL's settings as a fresh process, "
                      f"Python start-up included; {tp['wall_runs']} run{'s' * (tp['wall_runs'] != 1)} each, "
                      "interleaved; median (min–max)"]
        for key, label, how in (
                ("wall_ours_cleanrl", "ours", "python -m experiments.train with CleanRL's settings as overrides, "
                                              "final evaluation off (the full command is in the JSON)"),
                ("wall_sb3_cleanrl", "SB3", "SB3 PPO at CleanRL's settings in a small script")):
            w = tp.get(key)
            if w:
                lines.append(f"  {label:<8}{w['wall_seconds']['median']:>7.2f} s ({_range(w['wall_seconds'])}; "
                             f"CPU {w['cpu_seconds']['median']:.2f} s)  {how}")
    if ref["live"]:
        v = ref["versions"]
        lines.append(f"  {'CleanRL':<8}{ref['wall_seconds']['median']:>7.2f} s ({_range(ref['wall_seconds'])}; "
                     f"CPU {ref['cpu_seconds']['median']:.2f} s)  run live: {ref['command']}")
        lines.append(f"          its environment: Python {v.get('python')}, torch {v.get('torch')}, gymnasium "
                     f"{v.get('gymnasium')}; its default torch threads (every CPU), seed 1 (its default)")
    else:
        lines.append(f"  {CLEANRL_DOCUMENTED_LABEL}: ~{ref['wall_seconds']['median']:g} s for "
                     f"{ref['steps']:,} steps, one figure (spread unknown) — {ref['source']}. Run it live with "
                     "--cleanrl-script PATH/TO/cleanrl/ppo.py --cleanrl-python PATH/TO/its/python")
    ratio_labels = {"steps_per_second_vs_cleanrl": "steps/s vs CleanRL", "wall_vs_cleanrl": "wall vs CleanRL",
                    "steps_per_second_vs_sb3": "steps/s vs SB3", "wall_vs_sb3": "wall vs SB3"}
    if tp["ratios"]:
        lines.append("  ratios, ours faster by (ratio of medians, min–max over pairings): " + "; ".join(
            f"{ratio_labels[k]} ({v['reference']}) {v['median']:.1f}× ({v['min']:.1f}–{v['max']:.1f})"
            for k, v in tp["ratios"].items()))
    return lines
