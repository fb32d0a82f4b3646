"""``--mode memory``: peak RSS of a default training run (``python -m experiments.train`` as the only child of a
small wrapper process, which reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), ``--repeats`` times."""

from __future__ import annotations

import tempfile

from experiments.benchmark.common import (_range, compose_train_config, describe, run_peak_rss, spread, target_row,
                                          train_command)

TARGET_RSS_MB = 600.0


def report_memory(args, our_overrides: list[str]) -> dict:
    tc = compose_train_config(our_overrides)
    steps = args.steps or tc.total_timesteps
    peaks, walls = [], []
    with tempfile.TemporaryDirectory(prefix="ppo-bench-") as tmp:
        cmd = train_command(our_overrides + [f"total_timesteps={steps}", f"seed={args.first_seed}"], tmp)
        for _ in range(args.repeats):
            wall, _cpu, _out, peak = run_peak_rss(cmd, timeout=1800)
            walls.append(wall)
            peaks.append(peak)
    return {"command": " ".join(cmd), "steps": steps, "seed": args.first_seed, "runs": args.repeats,
            "peak_rss_mb": spread(peaks), "wall_seconds": spread(walls), "config": describe(tc)}


def memory_targets(mem: dict) -> list[dict]:
    return [target_row("peak RSS of a training run (MB)", mem["peak_rss_mb"]["max"], "<", TARGET_RSS_MB,
                       f"largest of {mem['runs']} runs")]


def format_memory(mem: dict) -> list[str]:
    p = mem["peak_rss_mb"]
    return ["", f"MEMORY — peak RSS of `{mem['command'].split(' ', 1)[1]}`",
            f"  median {p['median']:.0f} MB ({_range(p, 0)} MB over {mem['runs']} runs; {mem['steps']:,} "
            f"steps, {mem['wall_seconds']['median']:.1f} s wall each)"]
