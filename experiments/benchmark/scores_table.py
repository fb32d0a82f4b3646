"""The score benchmark's results: one row per task (mean ± std over seeds, per seed, anchors, status), printed as a
table, written as Markdown, and drawn as learning curves."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from experiments.benchmark.scores_anchors import ANCHOR_CAVEAT, judge
from experiments.benchmark.scores_runs import RunState, wall_seconds
from experiments.benchmark.scores_tasks import Task
from experiments.sweep_report import common_grid, interpolate

STD_NOTE = "std over seeds with ddof=0"
FINAL_NOTE = ("final = deterministic evaluation of the final policy, logged by experiments.train as "
              "hparams/final_eval_return (= the run's last eval/mean_return)")
TRAIN_NOTE = ("last 100 = mean return of the last 100 training episodes (CleanRL's measure), from "
              "hparams/final_train_return: the returns of those episodes themselves")


def _num(x: Optional[float], digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:,.{digits}f}"


def _stats(values: Sequence[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "values": [float(v) for v in values]}


def task_result(task: Task, runs: Sequence[RunState]) -> dict:
    """One row of the table: the task's scores over seeds (or its progress), anchors and status."""
    per_seed = []
    for r in runs:
        seconds, estimated = wall_seconds(r)
        attempts = r.record["attempts"]
        starts = [i for i, a in enumerate(attempts) if a["kind"] == "start"]
        resumes = [a for a in attempts[starts[-1] if starts else 0:] if a["kind"] == "resume"]
        # the most seeds that shared a process with this one since its start (a start or a resume as a population)
        population = max((a.get("population") or [] for a in attempts[starts[-1] if starts else 0:]), key=len,
                         default=[]) or None
        per_seed.append({
            "seed": r.seed, "dir": str(r.path), "state": "failed" if r.failed else r.state,
            "final_eval_return": r.final, "final_from": r.final_from, "last_eval_mean_return": r.last_eval,
            "final_train_return": r.train_return, "steps": r.steps, "wall_seconds": seconds,
            "wall_estimated": estimated, "attempts": len(attempts), "resumed": bool(resumes),
            "resumed_inexactly": any(a["exact"] is not True for a in resumes), "error": r.failed,
            "population": population})
    done = [r for r in runs if r.state == "done"]
    complete = len(done) == len(runs) and not any(r.failed for r in runs)
    out: dict = {
        "task": task.word, "env_id": task.env_id, "env_kwargs": task.kwargs, "family": task.family,
        "anchor_task": task.key, "budget": task.budget, "eval_episodes": task.eval_episodes,
        "seeds": [r.seed for r in runs], "n_seeds": len(runs), "n_done": len(done), "complete": complete,
        "steps_done": sum(r.steps for r in runs), "steps_total": task.budget * len(runs),
        "final_eval": None, "last100_train": None, "wall_seconds": None,
        "anchors": [{**vars(a), "label": a.label()} for a in task.anchors],
        "status": "incomplete", "compared_with": None, "status_note": "", "runs": per_seed,
        "resumed_inexactly": any(p["resumed_inexactly"] for p in per_seed)}
    if complete:
        out["final_eval"] = {**_stats([r.final for r in runs]), "source": FINAL_NOTE}
        trains = [r.train_return for r in runs]
        if all(t is not None for t in trains):
            out["last100_train"] = {**_stats(trains), "source": TRAIN_NOTE}
        walls = [p["wall_seconds"] for p in per_seed if p["wall_seconds"] is not None]
        if walls:
            out["wall_seconds"] = {"median": float(np.median(walls)), "min": min(walls), "max": max(walls),
                                   "values": walls, "estimated": any(p["wall_estimated"] for p in per_seed),
                                   "population": max((len(p["population"] or ()) for p in per_seed), default=0)}
        status, anchor, why = judge(out["final_eval"]["mean"], task.budget, task.anchors)
        out.update(status=status, compared_with=anchor.label() if anchor else None, status_note=why)
    else:
        failed = [p for p in per_seed if p["state"] == "failed"]
        out["status_note"] = (f"curve so far, {out['steps_done']:,}/{out['steps_total']:,} steps"
                              + (f"; {len(failed)} run(s) failed" if failed else ""))
    return out


def plot_task(path: Path, task: Task, runs: Sequence[RunState], row: dict) -> None:
    """Training return against env steps: each seed thin, mean ± std over seeds as a band, the final evaluation
    (mean ± std over seeds) as a point at the budget, anchors as horizontal lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    curves = [r.curve for r in runs if r.curve[0].size]
    for steps, values in curves:
        ax.plot(steps, values, color="tab:blue", lw=0.6, alpha=0.3)
    if curves:
        grid = common_grid([c[0] for c in curves])
        ys = np.stack([interpolate(s, v, grid) for s, v in curves])
        mean, std = ys.mean(axis=0), ys.std(axis=0)
        plural = "s" * (len(curves) != 1)
        ax.plot(grid, mean, color="tab:blue", lw=1.8, label=f"training return, mean over {len(curves)} seed{plural}")
        ax.fill_between(grid, mean - std, mean + std, color="tab:blue", alpha=0.2, lw=0, label="± std over seeds")
    final = row["final_eval"]
    if final is not None:
        x = max(r.steps for r in runs)
        ax.errorbar([x], [final["mean"]], yerr=[final["std"]], fmt="o", color="black", capsize=4, zorder=5,
                    label=f"final deterministic eval ({task.eval_episodes} ep.): "
                          f"{_num(final['mean'])} ± {_num(final['std'])}")
    styles = ["--", ":", "-."]
    colors = ["tab:red", "tab:green", "tab:purple", "tab:orange"]
    for i, a in enumerate(task.anchors):
        color = colors[i % len(colors)]
        if a.low is not None:
            ax.axhspan(a.low, a.value, color=color, alpha=0.08, lw=0)
        ax.axhline(a.value, color=color, ls=styles[i % len(styles)], lw=1.2, label=a.label())
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda x, _: f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:,.0f}"))
    ax.set_xlabel("env steps")
    ax.set_ylabel("episodic return (training: charts/episodic_return)")
    status = row["status"] if row["complete"] else row["status_note"]
    seeds = f"{len(runs)} seed{'s' * (len(runs) != 1)}"
    ax.set_title(f"{task.word} ({task.env_id}): {seeds}, budget {task.budget:,} steps — {status}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)
    ax.legend(fontsize=7, loc="best")
    fig.savefig(path, dpi=110)


def format_table(results: dict) -> str:
    meta = results["meta"]
    lines = [f"PPO scores — runs trained {meta['trained']} on {meta['trained_on']}, {meta['jobs']} "
             f"{'process(es), a task per process,' if meta.get('population') else 'run(s)'} at a time, "
             f"torch_threads=1 (table of {meta['time']})",
             f"  Python {meta['python']}, torch {meta['torch']}, gymnasium {meta['gymnasium']}"
             + "".join(f", {k} {v}" for k, v in meta["extras"].items() if v),
             f"  seeds {meta['seed_range']} ({meta['freshness']})",
             f"  {FINAL_NOTE}; {STD_NOTE}", f"  {TRAIN_NOTE}", f"  {ANCHOR_CAVEAT}",
             *(["  GENERIC defaults (env=gym env.id=<id>), not the tuned configs"] if meta.get("generic") else []),
             *([f"  NOT the tuned configs alone: overrides {' '.join(meta['overrides'])}"]
               if meta["overrides"] else []),
             *([f"  budgets overridden: --steps {meta['steps_override']:,} (anchors are for full budgets)"]
               if meta["steps_override"] else []),
             ""]
    header = f"{'task':<30}{'budget':>11}{'seeds':>7}{'final eval (mean ± std)':>27}{'last 100 train':>20}" \
             f"  {'wall s/run':>30}  status"
    lines += [header, "-" * len(header)]
    for row in results["tasks"]:
        task = f"{row['task']} ({row['env_id']})"
        seeds = f"{row['n_done']}/{row['n_seeds']}"
        if row["complete"]:
            f, t, w = row["final_eval"], row["last100_train"], row["wall_seconds"]
            final = f"{_num(f['mean'], 2)} ± {_num(f['std'], 2)}"
            train = f"{_num(t['mean'], 2)} ± {_num(t['std'], 2)}" if t else "—"
            wall = (f"{w['median']:,.1f} ({w['min']:,.1f}–{w['max']:,.1f})" + ("~" if w["estimated"] else "")
                    + (f" {w['population']}×" if w["population"] else "") if w else "—")
            status = f"{row['status']}  ({row['status_note']})"
        else:
            final, train, wall, status = row["status_note"], "", "", "—"
        if len(task) > 29:
            lines.append(task)
            task = ""
        if len(final) > 26:
            lines.append(f"{task:<30}{row['budget']:>11,}{seeds:>7}  {final}")
            lines.append(f"{'':<48}{'':>27}{train:>20}  {wall:>30}  {status}")
        else:
            lines.append(f"{task:<30}{row['budget']:>11,}{seeds:>7}{final:>27}{train:>20}  {wall:>30}  {status}")
    lines += ["", "per seed (final eval; last 100 train; wall s; resumed?):"]
    for row in results["tasks"]:
        parts = []
        for p in row["runs"]:
            if p["state"] == "done":
                how = ""
                if p["resumed"]:
                    how = ", resumed INEXACTLY" if p["resumed_inexactly"] else ", resumed exactly"
                wall = f"{p['wall_seconds']:.1f}{'~' if p['wall_estimated'] else ''} s" \
                    if p["wall_seconds"] is not None else "— s"
                if p["population"]:
                    how += f", in a population with seeds {', '.join(str(s) for s in p['population'])}"
                parts.append(f"{p['seed']}: {_num(p['final_eval_return'], 2)}; {_num(p['final_train_return'], 2)}; "
                             f"{wall}{how}")
            else:
                parts.append(f"{p['seed']}: {p['state']} at {p['steps']:,}/{row['budget']:,} steps"
                             + (f" ({p['error']})" if p["error"] else ""))
        lines.append(f"  {row['task']}: " + " | ".join(parts))
    lines += ["", "anchors (higher is better; the one compared with is marked *):"]
    for row in results["tasks"]:
        if not row["anchors"]:
            lines.append(f"  {row['task']}: none published ({row['anchor_task']})")
            continue
        marked = [("* " if a["label"] == row["compared_with"] else "  ") + a["label"] for a in row["anchors"]]
        lines.append(f"  {row['task']}: " + "; ".join(marked))
    sources = sorted({f"{a['source']}: {a['url']}" for row in results["tasks"] for a in row["anchors"]})
    if sources:
        lines += ["sources:", *(f"  {s}" for s in sources)]
    if any(row["wall_seconds"] and row["wall_seconds"]["population"] for row in results["tasks"]):
        lines.append("a wall marked P× is that of one process training P seeds as a population (--population)")
    if any(row["wall_seconds"] and row["wall_seconds"]["estimated"] for row in results["tasks"]):
        lines.append("~ = includes an attempt the benchmark could not time to its end (timed to its last event)")
    return "\n".join(line for line in lines).rstrip()


def format_markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"Runs trained {meta['trained']} on {meta['trained_on']} ({meta['jobs']} "
             f"{'processes, each a task as one population,' if meta.get('population') else 'runs'} at a time, one "
             f"torch thread each), Python {meta['python']}, torch {meta['torch']}, gymnasium "
             f"{meta['gymnasium']}; seeds {meta['seed_range']} ({meta['freshness']})"
             + ("; the generic defaults of `env=gym env.id=<id>`, not the tuned configs" if meta.get("generic")
                else "") + ". Command: "
             f"`python -m experiments.benchmark {' '.join(meta['argv'])}`.", "",
             f"Final eval: the deterministic evaluation of the final policy (`hparams/final_eval_return`), mean ± "
             f"std over seeds ({STD_NOTE}). Last 100 train: the mean return of the last 100 training episodes, "
             f"CleanRL's measure (`hparams/final_train_return`, the episodes' own returns). Wall: per run, median "
             f"(min–max), Python start-up included (\"P seeds in one process\": the seeds were trained as one "
             f"population, `--population`, and the wall is that process's). Status: PASS when the mean final eval is "
             f"≥ the best anchor at the same budget (or at a larger one), MISS when below the best same-budget anchor. "
             f"{ANCHOR_CAVEAT[0].upper() + ANCHOR_CAVEAT[1:]}.", "",
             "| task | budget | final eval (mean ± std) | per seed | last 100 train | wall per run | anchors | "
             "status |", "|---|---:|---:|---|---:|---:|---|---|"]
    for row in results["tasks"]:
        anchors = "<br>".join(("**" + a["label"] + "**") if a["label"] == row["compared_with"] else a["label"]
                              for a in row["anchors"]) or "none published"
        task = f"{row['task']} ({row['env_id']})"
        if row["complete"]:
            f, t, w = row["final_eval"], row["last100_train"], row["wall_seconds"]
            cells = [task, f"{row['budget']:,}",
                     f"{_num(f['mean'])} ± {_num(f['std'])} ({row['n_seeds']} seed{'s' * (row['n_seeds'] != 1)}, "
                     f"{row['eval_episodes']} ep.)",
                     ", ".join(_num(v) for v in f["values"]),
                     f"{_num(t['mean'])} ± {_num(t['std'])}" if t else "—",
                     _wall(w), anchors,
                     f"{row['status']} ({row['status_note']})"
                     + ("; resumed inexactly" if row["resumed_inexactly"] else "")]
        else:
            cells = [task, f"{row['budget']:,}", row["status_note"], "", "", "", anchors, "—"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    sources = sorted({(a["source"], a["url"]) for row in results["tasks"] for a in row["anchors"]})
    if sources:
        lines += ["Sources: " + "; ".join(f"[{name}]({url})" for name, url in sources) + ".", ""]
    lines += [f"![{row['task']}]({row['task']}/learning_curves.png)" for row in results["tasks"]]
    return "\n".join(lines) + "\n"


def _wall(w: Optional[dict]) -> str:
    if not w:
        return "—"
    digits = 0 if w["max"] >= 100 else 1
    return (f"{w['median']:,.{digits}f} s ({w['min']:,.{digits}f}–{w['max']:,.{digits}f})"
            + (" ~" if w["estimated"] else "")
            + (f", {w['population']} seeds in one process" if w.get("population") else ""))


def trained_when(runs: dict) -> dict:
    """When and on what the runs of the table were trained (from their records: a rerun that only reports
    does not change it)."""
    attempts = [a for rs in runs.values() for r in rs for a in r.record["attempts"]]
    if not attempts:
        return {"trained": "— (nothing trained yet)", "trained_on": "—"}
    fmt = "%Y-%m-%d %H:%M"
    start = min(a["started"] for a in attempts)
    end = max(a["started"] + (a.get("seconds") or 0.0) for a in attempts)
    cpus = sorted({a.get("cpu") or "unknown CPU" for a in attempts})
    first, last = time.strftime(fmt, time.localtime(start)), time.strftime(fmt + " %Z", time.localtime(end))
    return {"trained": f"{first}–{last}",
            "trained_on": " and ".join(cpus)}
