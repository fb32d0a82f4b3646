"""Helpers shared by the test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import experiments.train as train_entry


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the real Hydra entry point in-process; returns (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["ppo-train", *args])
    code = 0
    try:
        train_entry.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a run's event folder, read back with TensorBoard's own reader: tag → [(step, value)]."""
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
