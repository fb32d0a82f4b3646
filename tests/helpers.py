"""Helpers shared by the test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import experiments.train as train_entry

CONF = Path(__file__).resolve().parent.parent / "conf"


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


def compose_cfg(overrides=(), config_dir: Path = CONF, config_name: str = "config"):
    """Compose a config as Hydra does for the entry point (the repository's ``conf/``)."""
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def leaves(node, prefix=""):
    """Flat {dotted.key: value} of a nested dict (lists are values)."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def yaml_leaves(path: Path) -> dict:
    """The values a config file states, read with plain YAML (not through Hydra)."""
    return leaves(yaml.safe_load(path.read_text()) or {})
