"""Summarise a Hydra multirun: ``python -m experiments.sweep_report DIR`` (console script ``ppo-sweep-report``).

Examples::

    python -m experiments.train -m sweep=clip_entropy            # 3 clip ratios × 2 entropy coefs × 3 seeds
    python -m experiments.sweep_report multirun/2026-11-21/23-43-36
    python -m experiments.sweep_report DIR --out /tmp/report --metric hparams/final_train_return

A run is any folder under DIR holding ``.hydra/config.yaml`` and ``tb/`` (so the basic sweeper's, joblib's and
optuna's output all work; ``multirun.yaml`` is not needed). Runs are grouped by the config keys that differ
across runs, seed excepted (``--group-by`` to choose); ``agent.clip_ratio`` and ``agent.entropy_coef`` are always
columns. A run's *final return* is the last value of ``--metric`` (default ``eval/mean_return``, the final
deterministic evaluation), else its last ``charts/episodic_return``. Per config the report gives the mean ± std
(population std, ddof=0) over seeds, the IQM (interquartile mean: the mean of the middle 50 %, dropping
⌊n/4⌋ seeds at each end, as ``scipy.stats.trim_mean(x, 0.25)`` and rliable do), min, max and n_seeds.

Written to OUTDIR (default ``DIR/report``): ``report.md``, ``report.csv``, ``learning_curves.png``
(``charts/episodic_return`` against env steps, mean ± std over seeds on the seeds' common steps) and, when both
``agent.clip_ratio`` and ``agent.entropy_coef`` were swept, ``heatmap.png`` (cell = mean final return) if their
values form a full grid (a grid sweep), else ``scatter.png`` (one point per searched pair, coloured by its mean
final return: an Optuna search samples points, not a grid, and its heatmap would be mostly empty).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from omegaconf import OmegaConf

from agents.config import first_line

CLIP_KEY = "agent.clip_ratio"
ENTROPY_KEY = "agent.entropy_coef"
DEFAULT_KEYS = (CLIP_KEY, ENTROPY_KEY)
SEED_KEY = "seed"
DEFAULT_METRIC = "eval/mean_return"
CURVE_TAG = "charts/episodic_return"
MAX_CURVE_POINTS = 500


class ReportError(Exception):
    """A problem the user can fix (no runs, unknown key); reported as one line, exit code 2."""


@dataclass
class Run:
    """One job of the multirun: its folder, flattened config and the scalars the report needs."""

    path: Path
    name: str
    config: dict[str, Any]
    final: float = math.nan
    final_tag: Optional[str] = None
    curve_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curve_values: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class Group:
    """The runs of one config (all seeds): the key values and the final-return statistics."""

    key: tuple
    runs: list[Run]

    @property
    def finals(self) -> np.ndarray:
        return np.array([r.final for r in self.runs], dtype=float)

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def mean(self) -> float:
        return float(np.mean(self.finals))

    @property
    def std(self) -> float:
        return float(np.std(self.finals))

    @property
    def iqm(self) -> float:
        return interquartile_mean(self.finals)

    @property
    def fell_back(self) -> bool:
        return any(r.final_tag == CURVE_TAG for r in self.runs)


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the middle 50 %: drop ⌊n/4⌋ values at each end (n < 4: the plain mean)."""
    x = np.sort(np.asarray(values, dtype=float))
    cut = int(0.25 * len(x))
    return float(np.mean(x[cut:len(x) - cut]))


# ---------------------------------------------------------------------------------------------------- reading


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"agent": {"clip_ratio": 0.2}}`` → ``{"agent.clip_ratio": 0.2}``; lists become tuples (hashable)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(node, list):
        return {prefix[:-1]: tuple(v if not isinstance(v, (dict, list)) else str(v) for v in node)}
    return {prefix[:-1]: node}


def load_config(path: Path) -> dict[str, Any]:
    cfg = OmegaConf.load(path)
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:...} outside Hydra: keep the interpolation text
        container = OmegaConf.to_container(cfg, resolve=False)
    return flatten(container)


def find_run_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) with ``.hydra/config.yaml`` and a ``tb/`` folder."""
    found = {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    return sorted(d for d in found if (d / "tb").is_dir())


def read_scalars(tb_dir: Path, tags: Sequence[str]) -> dict[str, list[tuple[float, int, float]]]:
    """``tag → [(wall_time, step, value), …]`` for every event file under ``tb_dir`` (subfolders too), read
    with TensorBoard's own reader and no down-sampling (size_guidance 0 = keep every point)."""
    from tensorboard.backend.event_processing import event_accumulator, event_multiplexer

    mux = event_multiplexer.EventMultiplexer(size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 1, event_accumulator.HISTOGRAMS: 1,
        event_accumulator.IMAGES: 1, event_accumulator.AUDIO: 1, event_accumulator.COMPRESSED_HISTOGRAMS: 1})
    mux.AddRunsFromDirectory(str(tb_dir))
    mux.Reload()
    out: dict[str, list[tuple[float, int, float]]] = {tag: [] for tag in tags}
    for run, run_tags in mux.Runs().items():
        for tag in tags:
            if tag in run_tags.get("scalars", ()):
                out[tag].extend((e.wall_time, e.step, e.value) for e in mux.Scalars(run, tag))
    for events in out.values():
        events.sort(key=lambda e: e[0])  # write order (stable for equal times)
    return out


def last_finite(events: list[tuple[float, int, float]]) -> Optional[float]:
    for _, _, value in reversed(events):
        if math.isfinite(value):
            return float(value)
    return None


def load_runs(root: Path, metric: str) -> list[Run]:
    """Every run under ``root`` with its final return; runs that logged no return are skipped with a warning."""
    runs = []
    for run_dir in find_run_dirs(root):
        name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
        try:
            config = load_config(run_dir / ".hydra" / "config.yaml")
        except Exception as exc:  # noqa: BLE001 - an unreadable config.yaml: skip that run, say why
            reason = first_line(exc)
            print(f"warning: skipping {name}: unreadable .hydra/config.yaml ({reason})", file=sys.stderr)
            continue
        run = Run(run_dir, name, config)
        scalars = read_scalars(run_dir / "tb", (metric, CURVE_TAG))
        for tag in (metric, CURVE_TAG):
            value = last_finite(scalars[tag])
            if value is not None:
                run.final, run.final_tag = value, tag
                break
        curve = scalars[CURVE_TAG]
        if curve:
            steps = np.array([e[1] for e in curve], dtype=float)
            values = np.array([e[2] for e in curve], dtype=float)
            order = np.argsort(steps, kind="stable")
            run.curve_steps, run.curve_values = steps[order], values[order]
        if run.final_tag is None:
            print(f"warning: {run_dir}: no {metric} or {CURVE_TAG} logged; run left out", file=sys.stderr)
            continue
        runs.append(run)
    return runs


# ---------------------------------------------------------------------------------------------------- grouping


def swept_keys(runs: Sequence[Run]) -> list[str]:
    """Config keys whose values differ across runs, in config order (a key missing from a run counts)."""
    keys: list[str] = []
    for run in runs:
        keys.extend(k for k in run.config if k not in keys)
    return [k for k in keys if len({_hashable(r.config.get(k)) for r in runs}) > 1]


def group_keys(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """The table's key columns: agent.clip_ratio, agent.entropy_coef (when the configs have them), then every
    other swept key but seed — except keys that follow from the columns before them (``env=bandit,cartpole``
    also changes env.kwargs.*, agent.learning_rate, … through conf/tuned: only env.id is kept). Dropping those
    leaves the groups unchanged. Returns (columns, dropped keys)."""
    keys = [k for k in DEFAULT_KEYS if any(k in r.config for r in runs)]
    dropped = []
    for key in swept_keys(runs):
        if key == SEED_KEY or key in keys:
            continue
        if _n_groups(runs, keys + [key]) > _n_groups(runs, keys):
            keys.append(key)
        else:
            dropped.append(key)
    return keys, dropped


def _n_groups(runs: Sequence[Run], keys: Sequence[str]) -> int:
    return len({tuple(_hashable(r.config.get(k)) for k in keys) for r in runs})


def group_runs(runs: Sequence[Run], keys: Sequence[str]) -> list[Group]:
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(_hashable(run.config.get(k)) for k in keys), []).append(run)
    return [Group(key, sorted(members, key=lambda r: _sort_key(r.config.get(SEED_KEY))))
            for key, members in sorted(groups.items(), key=lambda kv: tuple(_sort_key(v) for v in kv[0]))]


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _sort_key(value: Any) -> tuple:
    if isinstance(value, bool) or value is None:
        return (2, str(value))
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


def fmt_value(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    return "null" if value is None else str(value)


def short_names(keys: Sequence[str]) -> list[str]:
    """``agent.clip_ratio`` → ``clip_ratio`` when the last part is unambiguous."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return [s if last.count(s) == 1 else k for s, k in zip(last, keys)]


# ---------------------------------------------------------------------------------------------------- writing


def write_csv(path: Path, keys: Sequence[str], groups: Sequence[Group]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*keys, "n_seeds", "mean", "std", "iqm", "min", "max", "seeds", "final_from"])
        for g in groups:
            seeds = ";".join(fmt_value(r.config.get(SEED_KEY)) for r in g.runs)
            tags = ";".join(sorted({r.final_tag for r in g.runs}))
            writer.writerow([*(fmt_value(v) for v in g.key), g.n_seeds, repr(g.mean), repr(g.std), repr(g.iqm),
                             repr(float(g.finals.min())), repr(float(g.finals.max())), seeds, tags])


def markdown(root: Path, keys: Sequence[str], groups: Sequence[Group], metric: str, n_runs: int,
             figures: Sequence[Path], dropped: Sequence[str] = ()) -> str:
    lines = [f"# Sweep report: {root}", "",
             f"{n_runs} runs, {len(groups)} configs. Final return = the last `{metric}` of each run "
             f"(runs without it: the last `{CURVE_TAG}`, marked *); mean ± std (ddof=0), IQM and range over seeds.",
             ""]
    header = [*keys, "final return (mean ± std)", "IQM", "min … max", "n_seeds"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---:" for _ in header) + "|")
    for g in groups:
        star = "*" if g.fell_back else ""
        cells = [*(fmt_value(v).replace("|", "\\|") for v in g.key), f"{g.mean:.2f} ± {g.std:.2f}{star}",
                 f"{g.iqm:.2f}", f"{g.finals.min():.2f} … {g.finals.max():.2f}", str(g.n_seeds)]
        lines.append("| " + " | ".join(cells) + " |")
    best = max(groups, key=lambda g: g.mean)
    best_name = ", ".join(f"{k}={fmt_value(v)}" for k, v in zip(keys, best.key)) or "(one config)"
    lines += ["", f"Best mean final return: {best_name}: {best.mean:.2f} ± {best.std:.2f} "
                  f"over {best.n_seeds} seed(s).", ""]
    if dropped:
        lines += [f"Also differing across runs, as implied by the columns above: {', '.join(dropped)}.", ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures]
    return "\n".join(lines).rstrip() + "\n"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_heatmap(path: Path, runs: Sequence[Run], others: Sequence[str]) -> None:
    """clip_ratio (rows) × entropy_coef (columns), cell = mean final return of the runs with that pair."""
    clips = sorted({r.config[CLIP_KEY] for r in runs}, key=_sort_key)
    ents = sorted({r.config[ENTROPY_KEY] for r in runs}, key=_sort_key)
    mean = np.full((len(clips), len(ents)), np.nan)
    std = np.full_like(mean, np.nan)
    count = np.zeros(mean.shape, dtype=int)
    for i, c in enumerate(clips):
        for j, e in enumerate(ents):
            finals = [r.final for r in runs if r.config[CLIP_KEY] == c and r.config[ENTROPY_KEY] == e]
            if finals:
                mean[i, j], std[i, j], count[i, j] = np.mean(finals), np.std(finals), len(finals)
    fig = _figure(1.6 + 1.3 * len(ents), 1.4 + 0.8 * len(clips))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(mean), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(ents)), [fmt_value(e) for e in ents])
    ax.set_yticks(range(len(clips)), [fmt_value(c) for c in clips])
    ax.set_xlabel(ENTROPY_KEY)
    ax.set_ylabel(CLIP_KEY)
    finite = mean[np.isfinite(mean)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(len(clips)):
        for j in range(len(ents)):
            if count[i, j] == 0:
                ax.text(j, i, "—", ha="center", va="center", color="grey")
                continue
            color = "black" if finite.size and finite.max() > finite.min() and mean[i, j] > mid else "white"
            ax.text(j, i, f"{mean[i, j]:.2f}\n± {std[i, j]:.2f} (n={count[i, j]})", ha="center", va="center",
                    color=color, fontsize=8)
    over = "seeds" + (" and " + ", ".join(others) if others else "")
    ax.set_title(f"mean final return (over {over})", fontsize=9)
    fig.colorbar(im, ax=ax, label="mean final return")
    fig.savefig(path, dpi=110)


def is_full_grid(runs: Sequence[Run]) -> bool:
    """Whether every (clip_ratio, entropy_coef) pair of the swept values has a run (a grid sweep)."""
    pairs = {(_hashable(r.config[CLIP_KEY]), _hashable(r.config[ENTROPY_KEY])) for r in runs}
    clips, ents = {c for c, _ in pairs}, {e for _, e in pairs}
    return len(pairs) == len(clips) * len(ents)


def plot_scatter(path: Path, runs: Sequence[Run], others: Sequence[str]) -> None:
    """One point per searched (entropy_coef, clip_ratio) pair, coloured by the mean final return of its runs."""
    points: dict[tuple, list[float]] = {}
    for r in runs:
        points.setdefault((float(r.config[ENTROPY_KEY]), float(r.config[CLIP_KEY])), []).append(r.final)
    ents, clips = (np.array(v) for v in zip(*points))
    means = np.array([np.mean(v) for v in points.values()])
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    sc = ax.scatter(ents, clips, c=means, cmap="viridis", s=60, edgecolors="black", linewidths=0.5)
    for (e, c), finals in points.items():
        if len(finals) > 1:
            ax.annotate(f"n={len(finals)}", (e, c), textcoords="offset points", xytext=(5, 5), fontsize=7)
    if (ents > 0).all() and ents.max() / ents.min() > 20:
        ax.set_xscale("log")
    elif ents.max() > 0 and (ents > 0).any() and ents[ents > 0].max() / ents[ents > 0].min() > 20:
        ax.set_xscale("symlog", linthresh=float(ents[ents > 0].min()))
    ax.set_xlabel(ENTROPY_KEY)
    ax.set_ylabel(CLIP_KEY)
    ax.grid(alpha=0.3)
    over = "seeds" + (" and " + ", ".join(others) if others else "")
    ax.set_title(f"searched points: mean final return (over {over})", fontsize=9)
    fig.colorbar(sc, ax=ax, label="mean final return")
    fig.savefig(path, dpi=110)


def common_grid(steps: Sequence[np.ndarray]) -> np.ndarray:
    """The steps any seed logged, within the span all seeds cover (all steps if the spans do not overlap)."""
    lo, hi = max(s[0] for s in steps), min(s[-1] for s in steps)
    grid = np.unique(np.concatenate(steps))
    if lo <= hi:
        grid = grid[(grid >= lo) & (grid <= hi)]
    if grid.size > MAX_CURVE_POINTS:
        grid = grid[np.linspace(0, grid.size - 1, MAX_CURVE_POINTS).round().astype(int)]
    return grid


def interpolate(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation onto ``grid``; several values at one step are averaged first."""
    uniq, inverse = np.unique(steps, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    return np.interp(grid, uniq, sums / np.bincount(inverse))


def plot_curves(path: Path, keys: Sequence[str], groups: Sequence[Group]) -> int:
    """charts/episodic_return vs step: per config the mean over seeds and a ± std band. Returns curves drawn."""
    fig = _figure(7.5, 4.2 + 0.15 * len(groups) / min(3, max(1, len(groups) // 4)))
    ax = fig.add_subplot()
    import matplotlib

    colors = matplotlib.colormaps["tab10" if len(groups) <= 10 else "tab20"]
    names = short_names(keys)
    drawn = 0
    for idx, g in enumerate(groups):
        runs = [r for r in g.runs if r.curve_steps.size]
        if not runs:
            continue
        grid = common_grid([r.curve_steps for r in runs])
        ys = np.stack([interpolate(r.curve_steps, r.curve_values, grid) for r in runs])
        mean, std = ys.mean(axis=0), ys.std(axis=0)
        label = ", ".join(f"{n}={fmt_value(v)}" for n, v in zip(names, g.key)) or "all runs"
        color = colors(idx % colors.N)
        ax.plot(grid, mean, color=color, lw=1.5, label=f"{label} (n={len(runs)})")
        ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        drawn += 1
    ax.set_xlabel("env step")
    ax.set_ylabel(CURVE_TAG)
    ax.set_title("training return: mean ± std over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    if drawn:
        fig.legend(fontsize=7, ncol=min(3, max(1, drawn // 4)), loc="outside lower center")
    fig.savefig(path, dpi=110)
    return drawn


# ---------------------------------------------------------------------------------------------------- main


def build_report(root: Path, out: Path, metric: str = DEFAULT_METRIC,
                 group_by: Optional[Sequence[str]] = None) -> tuple[str, list[Path]]:
    """Read the runs under ``root`` and write the report into ``out``: (markdown, written paths)."""
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory")
    if not find_run_dirs(root):
        raise ReportError(f"no runs found under {root} (a run is a folder with .hydra/config.yaml and tb/)")
    runs = load_runs(root, metric)
    if not runs:
        raise ReportError(f"no run under {root} logged {metric} or {CURVE_TAG}")
    if group_by:
        unknown = [k for k in group_by if not any(k in r.config for r in runs)]
        if unknown:
            raise ReportError(f"--group-by {' '.join(unknown)}: not a config key of these runs "
                              f"(e.g. {', '.join(list(runs[0].config)[:6])}, …)")
        keys = list(group_by)
        dropped: list[str] = []
    else:
        keys, dropped = group_keys(runs)
    groups = group_runs(runs, keys)

    out.mkdir(parents=True, exist_ok=True)
    figures = []
    swept = swept_keys(runs)
    if CLIP_KEY in swept and ENTROPY_KEY in swept:
        others = [k for k in keys if k not in DEFAULT_KEYS]
        if is_full_grid(runs):
            plot_heatmap(out / "heatmap.png", runs, others)
            figures.append(out / "heatmap.png")
        else:
            plot_scatter(out / "scatter.png", runs, others)
            figures.append(out / "scatter.png")
    if plot_curves(out / "learning_curves.png", keys, groups):
        figures.append(out / "learning_curves.png")
    write_csv(out / "report.csv", keys, groups)
    text = markdown(root, keys, groups, metric, len(runs), figures, dropped)
    (out / "report.md").write_text(text)
    return text, [out / "report.md", out / "report.csv", *figures]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ppo-sweep-report",
        description="Table (markdown + CSV), heatmap and learning curves of a Hydra multirun's final returns.")
    parser.add_argument("dir", type=Path, help="the multirun folder (e.g. multirun/<date>/<time>)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: DIR/report)")
    parser.add_argument("--metric", default=DEFAULT_METRIC,
                        help=f"scalar tag whose last value is a run's final return (default: {DEFAULT_METRIC}; "
                             f"runs without it fall back to the last {CURVE_TAG})")
    parser.add_argument("--group-by", nargs="+", default=None, metavar="KEY",
                        help="config keys that define a config (default: every key that differs across runs "
                             "except seed, plus agent.clip_ratio and agent.entropy_coef)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else args.dir / "report"
    try:
        text, paths = build_report(args.dir, out, args.metric, args.group_by)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write the report to --out {str(out)!r}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(text)
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
