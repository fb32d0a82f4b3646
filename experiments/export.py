"""Export a trained policy: ``python -m experiments.export checkpoint=PATH [format=pt2|onnx] [output=FILE]``
(``ppo-export``).

Writes a self-contained deterministic policy (observation statistics baked in) that needs only PyTorch
(``pt2``: ``torch.export.load(FILE).module()(obs)``) or an ONNX runtime (``onnx``, the ``onnx`` extra); see
``agents/export.py``. The default output is ``policy.<format>`` beside the checkpoint. The last line printed is
JSON for scripts::

    python -m experiments.export checkpoint=outputs/2026-11-21/12-00-00
    python -m experiments.export checkpoint=run/checkpoint.pt format=onnx output=deploy/cartpole.onnx
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from agents.api import export, load_policy, policy_dims
from agents.checkpoint import load_checkpoint, resolve_checkpoint
from agents.config import ConfigError
from agents.export import FORMATS
from agents.normalization import ObsNormalizer
from agents.run_config import to_record
from conf import CONF_DIR
from experiments.config import CHECKPOINT_MISSING
from experiments.entry import hydra_one_line_errors, user_errors


@dataclass
class ExportConfig:
    """Export a saved policy (``conf/export.yaml``)."""

    checkpoint: str = MISSING
    """A checkpoint file, or the run folder that holds ``checkpoint.pt`` (mandatory)."""
    format: str = "pt2"
    """pt2 (torch.export, needs only torch) or onnx (needs the onnx extra)."""
    output: Optional[str] = None
    """The file to write; null = ``policy.<format>`` beside the checkpoint."""

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"format={self.format!r} is invalid: must be one of {', '.join(FORMATS)}")


ConfigStore.instance().store(name="export_schema", node=ExportConfig)


def to_export_config(cfg: DictConfig | dict) -> ExportConfig:
    """The typed, validated export config (raises ``ConfigError`` naming the key)."""
    return to_record(ExportConfig, cfg, missing=CHECKPOINT_MISSING)


def run_export(cfg: DictConfig | dict) -> dict[str, Any]:
    """Export the checkpoint of ``cfg``; prints what was written (last line JSON) and returns it as a dict."""
    export_cfg = to_export_config(cfg)
    path = resolve_checkpoint(export_cfg.checkpoint)
    state = load_checkpoint(path)
    train_cfg, policy = load_policy(state)
    output = Path(export_cfg.output) if export_cfg.output else path.parent / f"policy{FORMATS[export_cfg.format]}"
    global_step = int(state.get("global_step", 0))
    written = export(policy, policy_dims(state), ObsNormalizer.from_agent_state(state["agent"]), train_cfg,
                     global_step, output, export_cfg.format)
    print(f"{train_cfg.env.id} policy after {global_step} steps exported to {written} ({export_cfg.format})")
    summary = {"output": str(written.resolve()), "format": export_cfg.format, "env_id": train_cfg.env.id,
               "global_step": global_step, "checkpoint": str(path.resolve())}
    print(json.dumps(summary), flush=True)
    return summary


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def hydra_main(cfg: DictConfig) -> None:
    with user_errors():
        run_export(cfg)


def main() -> None:
    hydra_one_line_errors(hydra_main)


if __name__ == "__main__":
    main()
