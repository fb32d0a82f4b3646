"""The typed config of a whole training run — env, agent, evaluation, seed, budget, checkpoints — shared by the
Python API (``agents.api``) and the Hydra entry point (``conf/``'s schema, registered by ``experiments/config.py``).

Validation goes through OmegaConf's structured configs (types, unknown keys) and then each record's ``validate``
(ranges and combinations), so both front doors refuse the same mistakes with the same one-line ``ConfigError``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from agents.config import ConfigError, PPOConfig, first_line, is_int
from envs.vector import EnvConfig


def check_seed(seed) -> None:
    """Seeds go to torch.manual_seed and NumPy: a non-negative integer below 2**63."""
    if not is_int(seed) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed={seed!r} is invalid: must be an integer in [0, 2**63)")


def check_device(device) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` (whether this machine has it is ``require_device``'s question: a checkpoint
    trained on a GPU still loads, evaluates and exports without one)."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"device={device!r} is invalid: must be cpu, cuda or cuda:N")


def require_device(device: str) -> None:
    """Refuse a ``device`` this torch cannot train on, before any training starts."""
    check_device(device)
    if device == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} is not available: this torch sees no CUDA GPU "
                          f"({torch.__version__}); use device=cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device={device!r} is not available: this torch sees {torch.cuda.device_count()} "
                          f"CUDA GPU(s), cuda:0 … cuda:{torch.cuda.device_count() - 1}")


@dataclass
class EvalConfig:
    """Deterministic evaluation of the policy (``eval.*``)."""

    episodes: int = 100
    """Episodes of the final evaluation (0 = none). The run returns their mean (the sweeper's objective)."""
    every: int = 0
    """Also evaluate every this many iterations (0 = only at the end); logged as eval/mean_return."""
    stop_return: Optional[float] = None
    """Stop training once a periodic evaluation's mean return reaches this (e.g. 475 for CartPole-v1)."""

    def validate(self) -> None:
        for key in ("episodes", "every"):
            value = getattr(self, key)
            if not is_int(value) or value < 0:
                raise ConfigError(f"eval.{key}={value!r} is invalid: must be an integer ≥ 0")
        if self.episodes == 0 and (self.every > 0 or self.stop_return is not None):
            raise ConfigError("eval.episodes=0 is invalid with eval.every or eval.stop_return: periodic "
                              "evaluation needs episodes ≥ 1")


@dataclass
class TrainConfig:
    """Everything one training run needs (``conf/config.yaml``)."""

    env: EnvConfig = field(default_factory=EnvConfig)
    agent: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 1
    """Seeds torch, the agent's NumPy generator and the envs."""
    total_timesteps: int = 100_000
    """Env steps to train for (whole iterations of num_envs × num_steps)."""
    checkpoint_every: int = 50
    """Save the checkpoint every this many iterations (0 = only at the end); always on exit and on signals."""
    resume: Optional[str] = None
    """A checkpoint file or run folder to continue; the run keeps its saved config."""
    init_checkpoint: Optional[str] = None
    """Fine-tune: a checkpoint file or run folder whose policy and critic the run starts from (a fresh optimizer);
    with agent.kl_coef > 0 it is also the default reference π_ref."""
    ref_checkpoint: Optional[str] = None
    """Reference policy π_ref for the KL penalty (agent.kl_coef > 0); default: the initial policy (the
    init_checkpoint's when given, else the random initial weights)."""
    allow_inexact_resume: bool = False
    """Resume even when the checkpoint could not capture the env state (e.g. a Box2D world or MuJoCo simulator):
    the envs restart from fresh episodes, so the resumed run will not equal an uninterrupted one."""
    progress: Optional[bool] = None
    """tqdm progress bar: null = only when stderr is a terminal."""
    torch_threads: int = 1
    """torch intra-op threads; 1 is fastest for small networks."""
    device: str = "cpu"
    """Where the networks train: ``cpu``, or ``cuda`` / ``cuda:N`` (a large population's update; envs, rollout
    bookkeeping and checkpoints stay on the host)."""

    def validate(self) -> None:
        self.env.validate()
        self.eval.validate()
        check_seed(self.seed)
        if not isinstance(self.allow_inexact_resume, bool):
            raise ConfigError(f"allow_inexact_resume={self.allow_inexact_resume!r} is invalid: must be true or false")
        if self.ref_checkpoint is not None and self.agent.kl_coef == 0:
            raise ConfigError("ref_checkpoint is only used by the KL penalty: set agent.kl_coef > 0 as well")
        if not is_int(self.torch_threads) or self.torch_threads < 1:
            raise ConfigError(f"torch_threads={self.torch_threads!r} is invalid: must be an integer ≥ 1")
        check_device(self.device)
        if not is_int(self.checkpoint_every) or self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every!r} is invalid: must be an integer ≥ 0")
        self.agent.validate(self.env.num_envs)
        batch = self.agent.batch_size(self.env.num_envs)
        if not is_int(self.total_timesteps) or self.total_timesteps < batch:
            raise ConfigError(f"total_timesteps={self.total_timesteps!r} is invalid: must be ≥ one batch, "
                              f"env.num_envs×agent.num_steps = {batch}")


@functools.lru_cache(maxsize=None)
def _structured(schema: type) -> Any:
    """``OmegaConf.structured(schema)``, built once per schema (most of the cost of validating a config: a sweep
    validates one per job). ``OmegaConf.merge`` copies its first argument, so the cached node is never changed."""
    from omegaconf import OmegaConf

    return OmegaConf.structured(schema)


def to_record(schema: type, cfg: Any, missing: str = "{key} is mandatory"):
    """``cfg`` (a mapping or an OmegaConf config) merged onto the dataclass ``schema`` with OmegaConf's structured
    configs and validated: the typed record, or one ``ConfigError`` naming the key (an unknown key, a wrong type, a
    value out of range; a missing mandatory value says ``missing`` with ``{key}`` filled in)."""
    from omegaconf import MissingMandatoryValue, OmegaConf

    try:
        # Plain values: a composed config's '+new.key' is open for adding and would slip through the schema.
        values = OmegaConf.to_container(cfg) if OmegaConf.is_config(cfg) else cfg
        record = OmegaConf.to_object(OmegaConf.merge(_structured(schema), values))
    except MissingMandatoryValue as exc:
        raise ConfigError(missing.format(key=exc.full_key)) from None
    except Exception as exc:  # noqa: BLE001 - OmegaConf's validation errors: wrong type, unknown key
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"{key}: {first_line(exc)}" if key else first_line(exc)) from None
    record.validate()
    return record


def to_train_config(cfg: Any) -> TrainConfig:
    """The typed, validated config of a run from a mapping or an OmegaConf config (raises ``ConfigError`` naming
    the key: an unknown key, a wrong type, a value out of range)."""
    return to_record(TrainConfig, cfg, missing="{key} is missing: give a registered Gymnasium id, e.g. env=gym "
                                               "env.id=Acrobot-v1")


def config_dict(cfg: TrainConfig) -> dict:
    """A run's config as plain containers: what checkpoints store (``run.config``) and ``to_train_config`` reads."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg))


def config_yaml(cfg: TrainConfig) -> str:
    """A run's config as YAML (the TensorBoard ``config`` text)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(config_dict(cfg))


def hparams_of(cfg: TrainConfig) -> dict:
    """Flat scalar hyperparameters for TensorBoard's HParams dashboard."""
    out: dict = {"env.id": cfg.env.id, "env.num_envs": cfg.env.num_envs, "seed": cfg.seed,
                 "total_timesteps": cfg.total_timesteps}
    for key, value in vars(cfg.agent).items():
        if value is None:
            value = "none"
        out[f"agent.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def final_metrics(result) -> dict[str, float]:
    """A finished run's HParams metrics (NaN where not measured): the final deterministic evaluation's mean and the
    mean of the last (up to 100) training episodes' returns."""
    final = result.eval.mean if result.eval is not None else float("nan")
    recent = result.episodic_returns
    return {"hparams/final_eval_return": final,
            "hparams/final_train_return": sum(recent) / len(recent) if recent else float("nan")}
