"""Scores a user can rerun: ``python -m experiments.benchmark --mode scores --envs halfcheetah,hopper --seeds 3``.

Each task (a config name of ``conf/env/``: cartpole, acrobot, …, halfcheetah, hopper, …) is trained with its tuned
config for its own budget (the composed config's ``total_timesteps``; ``--steps`` overrides it for short runs) by
the real entry point, ``python -m experiments.train env=<word> seed=<seed> …``, one fresh process per run and
``--jobs`` runs at a time (default 2), each with ``torch_threads=1`` and ``progress=false``, into
``<--out>/<word>/seed=<seed>/`` (default ``outputs/scores/``). With ``--population``, a task's seeds are trained by
one process as one population (``-m seed=… hydra/launcher=population``; each member writes its run folder as a
solo run would, its output in ``<out>/<word>/population.log``; interrupted members resume together, from fresh
episodes), ``--jobs`` worker processes at a time (the last population to start gets the slots left over as
workers of its own, ``hydra.launcher.n_jobs``): the same
algorithm per seed, for a fraction of the CPU time where per-call overhead dominates (small networks); each row
says when its seeds shared a process, and its wall is then the population's.

- **Generic** (``--generic``): each task's env (id and kwargs) and budget trained with the generic defaults that
  ``python -m experiments.train env=gym env.id=<id>`` uses instead of its tuned config: how far a user gets on a
  task nobody tuned for; runs of a generic benchmark are other runs than the tuned ones (use another ``--out``).
- **Seeds** are fresh: ``--seeds`` of them from ``--first-seed`` (default 1000). The tuned configs were tuned on
  seeds 0–39; seeds that overlap them are refused.
- **Score** of a run: its final deterministic evaluation, as ``experiments.train`` logs it
  (``hparams/final_eval_return``, also the last ``eval/mean_return``), over ``eval.episodes`` episodes: 100 for
  CPU-cheap tasks (classic control, Box2D, the bandit), 10 for MuJoCo ones (``--eval-episodes`` to change). Per
  task: mean ± std over seeds (std with ddof=0, as the sweep report), the per-seed values, and beside them the mean
  return of the last 100 training episodes (CleanRL's measure), read from ``hparams/final_train_return``: the
  trainer's mean of those episodes' own returns, not of the per-iteration ``charts/episodic_return`` means.
- **Anchors**: published figures of CleanRL and rl-baselines3-zoo PPO (``scores_anchors.ANCHORS``, with their
  sources). PASS when the mean final evaluation is ≥ the best anchor trained for the same budget, MISS when below
  it; without a same-budget anchor, PASS when it is ≥ the best anchor trained for a larger budget (fewer steps did
  as well), else n/a.
- **Resumable**: run it again with the same arguments after it was stopped (Ctrl-C, SIGTERM, a crash, a reboot) and
  it continues: finished runs (final evaluation logged) are skipped, interrupted runs continue from their
  checkpoint (``resume=<run folder>``; with ``allow_inexact_resume=true`` where the checkpoint could not hold the
  env state — Box2D, MuJoCo — which the table then reports as an inexact resume), runs never started are started.
  On SIGINT/SIGTERM the benchmark passes SIGTERM on to its runs (each finishes its iteration and checkpoints),
  waits for them, writes the table so far and exits 130/143. Runs also get SIGTERM if the benchmark dies.
- **Output**: a table printed and written as ``<out>/scores.json`` (or ``--json``) and ``<out>/scores.md``, and
  per task ``<out>/<word>/learning_curves.png`` (training return, mean ± std over seeds, against env steps; the
  final evaluation and the anchors drawn on it). A task with runs still to finish shows "curve so far, N/M
  steps" instead of a final figure. Each run's own output is in ``<run>/console.log``, its attempts (command,
  wall time, exit code, resumed or not) in ``<run>/scores_run.json``.

Exit code: 0 when every run finished; 1 when a run failed (the table shows it); 130/143 when stopped by a signal;
2 for a mistake in the arguments (one ``error:`` line, before any work).

This module is the mode's entry; its parts are ``scores_tasks`` (what ``--envs`` names), ``scores_anchors`` (the
published figures and the PASS/MISS rule), ``scores_runs`` (the run folders and the scheduler) and ``scores_table``
(the rows, the table, the Markdown and the learning curves).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

from agents.config import ConfigError
from experiments.benchmark.common import TUNED_SEEDS, _seed_range, fail, machine, save_json
from experiments.benchmark.scores_anchors import ANCHOR_CAVEAT
from experiments.benchmark.scores_runs import Scheduler, inspect_run, out_lock, say
from experiments.benchmark.scores_table import (FINAL_NOTE, STD_NOTE, TRAIN_NOTE, format_markdown, format_table,
                                                plot_task, task_result, trained_when)
from experiments.benchmark.scores_tasks import compose_task, parse_words


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("mujoco", "box2d"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def run_scores(args) -> dict:
    """``--mode scores``: train what is missing, then print and write the table; exits non-zero as documented."""
    import gymnasium as gym
    import torch

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    freshness = f"fresh: the tuned configs were tuned on seeds {TUNED_SEEDS.start}–{TUNED_SEEDS.stop - 1}"
    out = Path(args.out).expanduser().resolve()
    try:
        if args.jobs < 1:
            raise ConfigError(f"--jobs={args.jobs} is invalid: must be ≥ 1")
        overlap = sorted(set(seeds) & set(TUNED_SEEDS))
        if overlap:
            raise ConfigError(f"--first-seed {args.first_seed} with --seeds {args.seeds} gives seeds "
                              f"{_seed_range(seeds)}, which overlap the seeds {TUNED_SEEDS.start}–"
                              f"{TUNED_SEEDS.stop - 1} the tuned configs were tuned on: use --first-seed ≥ "
                              f"{TUNED_SEEDS.stop} (default 1000)")
        words = parse_words(args.envs)
        tasks = [compose_task(w, args.steps, args.override, args.eval_episodes, args.generic) for w in words]
        if args.envs.strip() == "all":
            tasks = [t for t in tasks if t.anchors]
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {str(out)!r} is a file: give a folder")
        if args.json is not None and args.json.is_dir():
            raise ConfigError(f"--json={str(args.json)!r} is invalid: it is a folder, give a file path")
        out.mkdir(parents=True, exist_ok=True)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"--out {str(out)!r}: {exc.strerror or exc}")

    how = (f"{args.jobs} process(es) at a time, a task's seeds as one population" if args.population
           else f"{args.jobs} run(s) at a time")
    say(f"scores: {len(tasks)} task(s) × {len(seeds)} seed(s), {how}, torch_threads=1, into {out}")
    say(f"  seeds {_seed_range(seeds)} ({freshness})")
    for t in tasks:
        budget = f"--steps {t.budget:,}" if args.steps is not None else f"the config's total_timesteps {t.budget:,}"
        say(f"  {t.word}: {t.env_id}, budget {budget}, final eval {t.eval_episodes} episodes ({t.family})"
            + (f"; generic defaults: {' '.join(t.train_args)}" if t.generic else ""))
    load_start = os.getloadavg()[0]
    code = 0
    try:
        with out_lock(out) as lock_fd:
            runs = {t.word: [inspect_run(t, s, out, args.override) for s in seeds] for t in tasks}
            todo = []
            for t in tasks:
                for r in runs[t.word]:
                    if r.state == "done":
                        say(f"  skip   {r.name}: finished (final eval {r.final:,.2f})")
                    else:
                        r.path.mkdir(parents=True, exist_ok=True)
                        todo.append(r)
            scheduler = Scheduler(args.jobs, lock_fd, args.override, population=args.population)
            scheduler.run_all(todo)
            if scheduler.signum is not None:
                code = 128 + scheduler.signum
            elif any(r.failed for rs in runs.values() for r in rs):
                code = 1
    except ConfigError as exc:
        fail(str(exc))
    results: dict = {"meta": {
        "mode": "scores", "argv": list(args.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "gymnasium": gym.__version__, "extras": versions(), "jobs": args.jobs,
        "population": args.population, "generic": args.generic,
        "torch_threads": 1, "seeds": seeds, "seed_range": _seed_range(seeds), "freshness": freshness,
        "seeds_fresh": True, "out": str(out), "steps_override": args.steps, "overrides": list(args.override),
        "load_start": load_start, "load_end": os.getloadavg()[0], "std": STD_NOTE, "final": FINAL_NOTE,
        "last100_train": TRAIN_NOTE, "anchor_caveat": ANCHOR_CAVEAT, **trained_when(runs)},
        "tasks": []}
    for t in tasks:
        row = task_result(t, runs[t.word])
        png = out / t.word / "learning_curves.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        plot_task(png, t, runs[t.word], row)
        row["learning_curves"] = str(png)
        results["tasks"].append(row)
    json_path = args.json or out / "scores.json"
    try:  # the files first: a closed stdout (| head) must not lose them
        save_json(json_path, results)
        (out / "scores.md").write_text(format_markdown(results))
    except OSError as exc:
        fail(f"cannot write {json_path}: {exc.strerror or exc}")
    say()
    say(format_table(results))
    say(f"\nJSON: {json_path}\nMarkdown: {out / 'scores.md'}\nlearning curves: {out}/<task>/learning_curves.png")
    if code:
        sys.exit(code)
    return results
