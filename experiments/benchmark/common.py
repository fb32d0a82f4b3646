"""What every report of the benchmark shares: its seeds, spreads and statistical tests, the composed training
config, processes timed from the outside (wall, CPU, peak memory), the machine, targets, formatting and errors."""

from __future__ import annotations

import json
import math
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

# conf/tuned/cartpole.yaml was tuned on seeds 0-39: scores must come from seeds it has not seen.
TUNED_SEEDS = range(0, 40)
FIRST_SEED = 1000


class BenchmarkError(RuntimeError):
    """A measurement that could not be taken (a subprocess failed): reported as one ``error:`` line."""


def fail(message: str, code: int = 2) -> None:
    """One ``error:`` line on stderr, then exit (2: a mistake in the arguments, before any work)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def solve_seeds(args) -> list[int]:
    """The seeds of solve and parity: ``--seeds`` of them from ``--first-seed`` (default 1000..1009)."""
    return list(range(args.first_seed, args.first_seed + args.seeds))


# --- spread and statistics -------------------------------------------------------------------------------------

def spread(values: Sequence[float]) -> dict:
    """min / median / max of ``values``, and the values themselves (in the order measured)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"min": None, "median": None, "max": None, "values": []}
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "values": vals}


def ratio_spread(num: dict, den: dict) -> dict:
    """num / den as the ratio of the medians, and its range from the least to the most favourable pairing
    (min / max and max / min). A side with no known spread (a documented figure) contributes its median."""
    def lo(s):
        return s["min"] if s["min"] is not None else s["median"]

    def hi(s):
        return s["max"] if s["max"] is not None else s["median"]

    return {"median": num["median"] / den["median"], "min": lo(num) / hi(den), "max": hi(num) / lo(den)}


def permutation_test(a: Sequence[float], b: Sequence[float], resamples: int = 20_000, seed: int = 0) -> float:
    """Two-sided p-value for "a and b come from the same distribution", with |mean(a) − mean(b)| as statistic,
    from ``resamples`` random relabellings of the pooled samples (p = (1 + #{≥ observed}) / (1 + resamples))."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    perms = np.random.default_rng(seed).permuted(np.tile(pooled, (resamples, 1)), axis=1)
    diffs = np.abs(perms[:, :len(a)].mean(axis=1) - perms[:, len(a):].mean(axis=1))
    return float((1 + np.count_nonzero(diffs >= observed - 1e-9 * max(1.0, observed))) / (resamples + 1))


def welch_t(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's t statistic (NaN when both samples are constant)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if len(a) > 1 and len(b) > 1 else 0.0
    return float((a.mean() - b.mean()) / se) if se > 0 else float("nan")


# --- configs ---------------------------------------------------------------------------------------------------

def env_overrides(env_id: str) -> list[str]:
    """CartPole-v1 is the default config (env=cartpole, with its tuned file); any other id goes through env=gym."""
    return [] if env_id == "CartPole-v1" else ["env=gym", f"env.id={env_id}"]


def compose_config(overrides: Sequence[str], label: str):
    """``conf/config.yaml`` composed with ``overrides`` as Hydra does it (not validated yet); a mistake is one
    ``ConfigError`` line starting with ``label``."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from agents.config import ConfigError, first_line
    from conf import CONF_DIR
    from experiments import config as _schema  # noqa: F401  (registers the schema)

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"{label}: {first_line(exc)}") from None


def compose_train_config(overrides: Sequence[str] = ()):
    """``conf/config.yaml`` composed with ``overrides`` as Hydra does it, validated into a ``TrainConfig``."""
    from experiments.run import to_train_config

    return to_train_config(compose_config(overrides, f"--override {' '.join(overrides)}"))


def describe(tc) -> dict:
    """The settings that decide speed, for the report."""
    agent = tc.agent
    return {"env.id": tc.env.id, "env.num_envs": tc.env.num_envs, "num_steps": agent.num_steps,
            "ppo_epochs": agent.ppo_epochs, "num_minibatches": agent.num_minibatches,
            "batch_size": agent.batch_size(tc.env.num_envs),
            "minibatch_size": agent.minibatch_size(tc.env.num_envs), "learning_rate": agent.learning_rate,
            "anneal_lr": agent.anneal_lr, "rollout_backend": agent.rollout_backend,
            "torch_threads": tc.torch_threads}


# --- fresh processes, timed from the outside -------------------------------------------------------------------

def _child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(cmd: Sequence[str], cwd: Optional[str], timeout: float,
              label: Optional[str] = None) -> tuple[float, float, str]:
    """One fresh process: (wall seconds, CPU seconds of it and its children, stdout). ``label`` names it in an
    error (default: the command)."""
    label = label or " ".join(cmd)
    cpu0, wall0 = _child_cpu_seconds(), time.perf_counter()
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"{label} ran past {timeout:g} s") from None
    except OSError as exc:
        raise BenchmarkError(f"cannot run {label}: {exc.strerror or exc}") from None
    wall = time.perf_counter() - wall0
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise BenchmarkError(f"{label} failed (exit {proc.returncode}): {tail[0][-300:]}")
    return wall, _child_cpu_seconds() - cpu0, proc.stdout


def run_walls(commands: dict, runs: int, steps: int, timeout: float = 900.0) -> dict:
    """Wall (and CPU) seconds of each command run ``runs`` times as a fresh process, Python start-up included.
    ``commands`` maps a name to ``{"cmd": [...], "cwd": folder or None}``. The runs are interleaved (round ``i``
    runs every command once), so that a change of load during the benchmark falls on every command alike."""
    walls: dict = {name: [] for name in commands}
    cpus: dict = {name: [] for name in commands}
    outs: dict = {name: [] for name in commands}
    for _ in range(runs):
        for name, spec in commands.items():
            wall, cpu, out = _run_once(spec["cmd"], spec.get("cwd"), timeout)
            walls[name].append(wall)
            cpus[name].append(cpu)
            outs[name].append(out)
    return {name: {"command": " ".join(spec["cmd"]), "steps": steps, "runs": runs,
                   "wall_seconds": spread(walls[name]), "cpu_seconds": spread(cpus[name]), "stdout": outs[name]}
            for name, spec in commands.items()}


def train_command(overrides: Sequence[str], run_dir: str) -> list[str]:
    return [sys.executable, "-m", "experiments.train", *overrides, f"hydra.run.dir={run_dir}"]


RSS_WRAPPER = ("import resource, subprocess, sys\n"
               "code = subprocess.run(sys.argv[1:]).returncode\n"
               "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(code)\n")
"""Runs a command (its output passed through) and prints, last, the peak resident memory of the largest of its
waited-for processes."""


def peak_rss_mb(stdout: str) -> Optional[float]:
    """What ``RSS_WRAPPER`` printed, in MB (Linux: ``ru_maxrss`` is in KiB)."""
    found = re.findall(r"^PEAK_RSS_KB (\d+)$", stdout, re.MULTILINE)
    return int(found[-1]) / 1024 if found else None


def run_peak_rss(cmd: Sequence[str], timeout: float) -> tuple[float, float, str, Optional[float]]:
    """``cmd`` as a fresh process under ``RSS_WRAPPER``: (wall seconds, CPU seconds, stdout, peak RSS in MB)."""
    wall, cpu, out = _run_once([sys.executable, "-c", RSS_WRAPPER, *cmd], None, timeout, label=" ".join(cmd))
    return wall, cpu, out, peak_rss_mb(out)


def machine() -> dict:
    """What the figures were measured on."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu_model": model, "platform": platform.platform(terse=True)}


# --- targets ---------------------------------------------------------------------------------------------------

COMPARE = {"<=": lambda v, t: v <= t, "<": lambda v, t: v < t, ">=": lambda v, t: v >= t}


def target_row(name: str, value: Optional[float], compare: str, threshold: float, note: str = "") -> dict:
    """One target's row: PASS/MISS of ``value`` ``compare`` ``threshold``, "n/a" when the value is unknown (its
    reference was not run)."""
    known = value is not None and not (isinstance(value, float) and math.isnan(value))
    ok = COMPARE[compare](value, threshold) if known else None
    return {"target": name, "value": value, "compare": compare, "threshold": threshold,
            "status": "n/a" if ok is None else ("PASS" if ok else "MISS"), "note": note}


# --- formatting and the JSON -----------------------------------------------------------------------------------

def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "not solved"
        if x != 0 and abs(x) < 10 ** -digits:
            return f"{x:.2e}"
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _range(s: Optional[dict], digits: int = 2) -> str:
    """ "min–max" of a spread, or a note that it is unknown."""
    if not s or s["min"] is None:
        return "spread unknown"
    return f"{_fmt(s['min'], digits)}–{_fmt(s['max'], digits)}"


def _seed_range(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    if seeds and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ", ".join(map(str, seeds))


def _freshness(seeds: Sequence[int]) -> str:
    overlap = sorted(set(seeds) & set(TUNED_SEEDS))
    if overlap:
        return (f"NOT fresh: {_seed_range(overlap)} overlap the seeds {TUNED_SEEDS.start}–{TUNED_SEEDS.stop - 1} the "
                f"tuned config was tuned on")
    return f"fresh: the tuned config was tuned on seeds {TUNED_SEEDS.start}–{TUNED_SEEDS.stop - 1}"


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    return x


def save_json(path: Path, results: dict) -> None:
    """``results`` as JSON at ``path`` (its folder made; infinities as "inf"); raises ``OSError``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(results), indent=2))
