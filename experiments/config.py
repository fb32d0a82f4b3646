"""The typed schema of ``conf/`` (Hydra structured configs), registered in Hydra's ConfigStore on import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from agents.config import ConfigError, PPOConfig
from envs.vector import EnvConfig


def check_seed(seed) -> None:
    """Seeds go to torch.manual_seed and NumPy: a non-negative integer below 2**63."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed={seed!r} is invalid: must be an integer in [0, 2**63)")


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
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
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

    def validate(self) -> None:
        self.env.validate()
        self.eval.validate()
        check_seed(self.seed)
        if not isinstance(self.allow_inexact_resume, bool):
            raise ConfigError(f"allow_inexact_resume={self.allow_inexact_resume!r} is invalid: must be true or false")
        if self.ref_checkpoint is not None and self.agent.kl_coef == 0:
            raise ConfigError("ref_checkpoint is only used by the KL penalty: set agent.kl_coef > 0 as well")
        if isinstance(self.torch_threads, bool) or self.torch_threads < 1:
            raise ConfigError(f"torch_threads={self.torch_threads!r} is invalid: must be an integer ≥ 1")
        if isinstance(self.checkpoint_every, bool) or self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every!r} is invalid: must be an integer ≥ 0")
        self.agent.validate(self.env.num_envs)
        batch = self.agent.batch_size(self.env.num_envs)
        if isinstance(self.total_timesteps, bool) or self.total_timesteps < batch:
            raise ConfigError(f"total_timesteps={self.total_timesteps!r} is invalid: must be ≥ one batch, "
                              f"env.num_envs×agent.num_steps = {batch}")


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
        if isinstance(self.episodes, bool) or not isinstance(self.episodes, int) or self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes!r} is invalid: must be an integer ≥ 1")
        check_seed(self.seed)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)


register_configs()
