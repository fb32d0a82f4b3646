"""The typed schema of ``conf/`` (Hydra structured configs), registered in Hydra's ConfigStore on import: a
run's ``TrainConfig`` (``agents/run_config.py``, shared with the Python API) and the evaluation command's
``EvaluateConfig``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from agents.config import ConfigError, is_int
from agents.run_config import EvalConfig, TrainConfig, check_seed  # noqa: F401  (the schema's records)


CHECKPOINT_MISSING = ("{key} is mandatory: give checkpoint=PATH (a checkpoint.pt file or the run folder that holds "
                      "one)")
"""The one-line error of a command whose ``checkpoint`` is missing (evaluate, export)."""


@dataclass
class EvaluateConfig:
    """Evaluate a saved policy (``conf/evaluate.yaml``, ``python -m experiments.evaluate checkpoint=PATH``)."""

    checkpoint: str = MISSING
    """A checkpoint file, or the run folder that holds ``checkpoint.pt`` (mandatory)."""
    episodes: int = 100
    """Episodes to run; the mean and std of their returns are printed."""
    deterministic: bool = True
    """Take the policy's mode (argmax / Gaussian mean); false samples actions."""
    seed: int = 0
    """Seeds the evaluation: env j and, when sampling, the actions get streams of ``SeedSequence(seed)``
    (``agents/seeding.py``), so no two seeds share an episode."""
    video: bool = False
    """Also record one episode as a video (needs the env's rgb_array rendering; ``pip install .[video]``)."""
    video_dir: Optional[str] = None
    """Where the video goes; null = ``videos/`` next to the checkpoint."""

    def validate(self) -> None:
        if not is_int(self.episodes) or self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes!r} is invalid: must be an integer ≥ 1")
        check_seed(self.seed)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)


register_configs()
