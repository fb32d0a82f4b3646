"""Build Gymnasium vector envs for the agent, checking that their spaces are ones it supports."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import gymnasium as gym
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

import envs  # noqa: F401  (registers SoftmaxBandit-v0)
from agents.config import ConfigError, first_line, is_int
from agents.spaces import space_dims, space_spec  # noqa: F401  (space_dims re-exported: a vector env's sizes)

VECTORIZATION_MODES = ("auto", "vector_entry_point", "sync", "async")
AUTORESET_MODES = ("auto", "next_step", "same_step")

# Simulators that live in an extra of this package (setup.cfg): the module an env imports → the extra to install,
# and the Gymnasium env family (entry-point prefix) that needs it, for an import error that does not say which
# module was missing.
SIMULATOR_EXTRAS = {"mujoco": "mujoco", "Box2D": "box2d"}
SIMULATOR_FAMILIES = {"gymnasium.envs.mujoco": "mujoco", "gymnasium.envs.box2d": "Box2D"}


@dataclass
class EnvConfig:
    """Which Gymnasium env to train on and how to vectorise it (``conf/env/*.yaml``)."""

    id: str = "???"
    """Any registered Gymnasium id with a Box observation and Discrete or Box actions (mandatory); a user's own
    env as ``my_package.envs:MyEnv-v0`` (Gymnasium's form: the module is imported first, which registers it)."""
    num_envs: int = 4
    """Parallel envs in the vector env."""
    kwargs: Dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for ``gym.make`` (e.g. the bandit's ``rewards`` and ``noise_std``)."""
    vectorization_mode: str = "auto"
    """auto (the env's native vector env when it has one and nothing else is asked, else sync),
    vector_entry_point, sync or async."""
    autoreset_mode: str = "auto"
    """auto (the vector env's default), next_step or same_step (sync/async only)."""
    max_episode_steps: Optional[int] = None
    """Override the registered time limit (episodes longer than this are truncated)."""

    def validate(self, prefix: str = "env.") -> None:
        if not isinstance(self.id, str) or not self.id or self.id == "???":
            raise ConfigError(f"{prefix}id is missing: give a registered Gymnasium id, e.g. {prefix}id=Acrobot-v1")
        if not is_int(self.num_envs) or self.num_envs < 1:
            raise ConfigError(f"{prefix}num_envs={self.num_envs!r} is invalid: must be an integer ≥ 1")
        if self.vectorization_mode not in VECTORIZATION_MODES:
            raise ConfigError(f"{prefix}vectorization_mode={self.vectorization_mode!r} is invalid: must be one of "
                              f"{', '.join(VECTORIZATION_MODES)}")
        if self.autoreset_mode not in AUTORESET_MODES:
            raise ConfigError(f"{prefix}autoreset_mode={self.autoreset_mode!r} is invalid: must be one of "
                              f"{', '.join(AUTORESET_MODES)}")
        if self.max_episode_steps is not None and (not is_int(self.max_episode_steps) or self.max_episode_steps < 1):
            raise ConfigError(f"{prefix}max_episode_steps={self.max_episode_steps!r} is invalid: "
                              "must be an integer ≥ 1, or null for the registered limit")


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``; Gymnasium's ``module:EnvId`` form imports ``module`` first (the module
    registers the env on import), as ``gym.make`` does — ``gym.spec`` alone does not import it."""
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"env.id={env_id!r} is invalid: module {module!r} could not be imported "
                              f"({first_line(exc)})") from None
    try:
        return gym.spec(name)
    except gym.error.Error as exc:
        where = f" (module {module!r} did not register {name!r})" if module else ""
        raise ConfigError(f"env.id={env_id!r} is invalid: not a registered Gymnasium id{where} "
                          f"({first_line(exc)})") from None


def _missing_simulator(spec: gym.envs.registration.EnvSpec, exc: BaseException) -> Optional[str]:
    """The simulator module (a key of ``SIMULATOR_EXTRAS``) whose failed import ``exc`` reports, or None.

    Gymnasium re-raises a failed ``import mujoco`` / ``import Box2D`` as ``DependencyNotInstalled`` with the
    ``ImportError`` as its cause; the cause's module name says which one failed, and the env's family says it when
    the import error carries no name."""
    if not isinstance(exc, (ImportError, gym.error.DependencyNotInstalled)):
        return None
    cause = exc if isinstance(exc, ImportError) else exc.__cause__
    name = getattr(cause, "name", None) if isinstance(cause, ImportError) else None
    if name:
        top = name.split(".")[0]
        return top if top in SIMULATOR_EXTRAS else None
    entry = spec.entry_point if isinstance(spec.entry_point, str) else getattr(spec.entry_point, "__module__", "")
    return next((module for prefix, module in SIMULATOR_FAMILIES.items() if (entry or "").startswith(prefix)), None)


def make_vec_env(cfg: EnvConfig, num_envs: Optional[int] = None) -> gym.vector.VectorEnv:
    """Make the vector env of ``cfg`` (``num_envs`` overrides ``cfg.num_envs``), with episode statistics.

    The native vector env (``vector_entry_point``, e.g. CartPole's, much faster than a sync one) is taken when
    the env has one and no kwargs, autoreset mode or time limit ask for a wrapped single env. Box actions are
    clipped to the space's bounds on the way in (the agent stores the unclipped sample for its log-prob). A Box2D
    or MuJoCo env whose simulator cannot be imported is refused in one line naming the extra to install.
    """
    cfg.validate()
    n = cfg.num_envs if num_envs is None else num_envs
    spec = env_spec(cfg.id)
    mode = cfg.vectorization_mode
    if mode == "auto":
        native = spec.vector_entry_point is not None and not cfg.kwargs and cfg.autoreset_mode != "same_step" \
            and cfg.max_episode_steps is None
        mode = "vector_entry_point" if native else "sync"
    vector_kwargs: Dict[str, Any] = {}
    if cfg.autoreset_mode != "auto":
        if mode == "vector_entry_point":
            raise ConfigError(f"env.autoreset_mode={cfg.autoreset_mode!r} is invalid with "
                              "env.vectorization_mode=vector_entry_point: use auto, or vectorization_mode=sync")
        vector_kwargs["autoreset_mode"] = AutoresetMode(
            {"next_step": "NextStep", "same_step": "SameStep"}[cfg.autoreset_mode])
    make_kwargs: Dict[str, Any] = dict(cfg.kwargs)
    if cfg.max_episode_steps is not None:
        make_kwargs["max_episode_steps"] = cfg.max_episode_steps
    try:
        envs_ = gym.make_vec(spec.id, num_envs=n, vectorization_mode=mode, vector_kwargs=vector_kwargs or None,
                             **make_kwargs)
    except ConfigError:
        raise
    except (ImportError, TypeError, ValueError, gym.error.Error) as exc:
        module = _missing_simulator(spec, exc)
        if module is not None:
            extra = SIMULATOR_EXTRAS[module]
            cause = exc if isinstance(exc, ImportError) else exc.__cause__
            why = f" ({first_line(cause)})" if cause is not None else ""
            raise ConfigError(f"env.id={cfg.id!r} needs the {module} simulator, which could not be imported{why}: "
                              f'install the {extra} extra with pip install -e ".[{extra}]"') from None
        if isinstance(exc, ImportError):  # another module of a user's env: their traceback says more
            raise
        message = first_line(exc)
        raise ConfigError(f"env.id={cfg.id!r} could not be made with env.kwargs={dict(cfg.kwargs)!r} and "
                          f"vectorization_mode={mode!r}: {message}") from None
    space_spec(envs_.single_observation_space, envs_.single_action_space, cfg.id)  # unsupported spaces: one line
    if isinstance(envs_.single_action_space, spaces.Box):
        envs_ = gym.wrappers.vector.ClipAction(envs_)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs_)
