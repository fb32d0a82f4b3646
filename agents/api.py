"""The Python front door: train, save, load, predict and evaluate from a script or a notebook, no Hydra.

Stable-Baselines3's shape, on this package's trainer, config validation and checkpoint format::

    from agents import PPO

    model = PPO("CartPole-v1", seed=0, num_envs=8, learning_rate=3e-3, num_steps=64)
    model.learn(50_000, logdir="runs/cartpole")         # TensorBoard in runs/cartpole/tb, checkpoint beside it
    print(model.evaluate(episodes=20).mean)
    model.save("cartpole.pt")
    model = PPO.load("cartpole.pt")
    action = model.predict(obs)                          # deterministic by default

A run folder written by ``learn(logdir=…)`` is laid out as a Hydra run's (``tb/``, ``checkpoint.pt``), so
``python -m experiments.evaluate checkpoint=…`` and ``python -m experiments.train resume=…`` read it, and
``PPO.load`` reads a Hydra run's checkpoint. Keyword arguments are the agent's settings (``PPOConfig``, the keys
of ``conf/agent/ppo.yaml``); a bad one raises the same one-line ``ConfigError`` as on the command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from gymnasium import spaces

from agents.checkpoint import CHECKPOINT_NAME, FORMAT_VERSION, load_checkpoint, save_checkpoint
from agents.config import ConfigError, PPOConfig, first_line, is_int
from agents.evaluation import EvalResult, evaluate_policy
from agents.export import DeterministicPolicy, export_policy
from agents.inference import Inference, make_inference, select_actions
from agents.logger import TensorBoardLogger
from agents.networks import ActorCritic, build_policy
from agents.normalization import ObsNormalizer
from agents.spaces import declared_action_space, vector_space_spec
from agents.run_config import (TrainConfig, check_device, config_dict, config_yaml, final_metrics, hparams_of,
                               require_device, to_train_config)
from agents.train import Callback, Member, Trainer, TrainResult
from envs.vector import EnvConfig, make_vec_env

AGENT_KEYS = tuple(f.name for f in dataclasses.fields(PPOConfig))


def make_trainer(tc: TrainConfig, envs, members: Sequence[Member]) -> Trainer:
    """The trainer of one run or of a population of runs (``members``; ``tc`` is the first one's run config, the
    others equal to it outside the per-member keys), on ``envs`` (``len(members) × num_envs`` sub-envs), with
    evaluation envs like the training ones. The one place both front doors build a trainer."""
    env_cfg = tc.env
    require_device(tc.device)
    return Trainer.population(members, envs, tc.total_timesteps, make_eval_envs=lambda n: make_vec_env(env_cfg, n),
                              eval_every=tc.eval.every, eval_episodes=tc.eval.episodes, progress=tc.progress,
                              device=tc.device)


def policy_dims(state: dict[str, Any]) -> tuple[int, int, bool]:
    """(obs_dim, action_dim, discrete) a checkpoint's policy was built for."""
    space = state["space"]
    return int(space["obs_dim"]), int(space["action_dim"]), bool(space["discrete"])


def load_policy(state: dict[str, Any], key: str = "checkpoint") -> tuple[TrainConfig, ActorCritic]:
    """The run's config and its policy with the saved weights (eval mode), from a loaded checkpoint."""
    try:
        saved, weights = state["run"]["config"], state["agent"]["policy"]
        dims = policy_dims(state)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{key} is invalid: the checkpoint lacks its run config, policy weights or spaces "
                          "(state['run']['config'], state['agent']['policy'], state['space'])") from None
    try:
        train_cfg = to_train_config(saved)
    except ConfigError as exc:
        raise ConfigError(f"{key}: the config saved in the checkpoint does not fit this version ({exc})") from None
    try:
        policy = build_policy(*dims, **train_cfg.agent.network())
        policy.load_state_dict(weights)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{key}: the saved weights do not fit the saved network config "
                          f"({first_line(exc)[:160]})") from None
    return train_cfg, policy.eval()


def _conf_settings(word: str) -> dict:
    """``conf/env/<word>.yaml`` under ``env`` and ``conf/tuned/<word>.yaml`` (agent keys, ``total_timesteps``) on
    top, as plain containers: what ``python -m experiments.train env=<word>`` composes, read with OmegaConf (no
    Hydra)."""
    from omegaconf import OmegaConf

    from conf import CONF_DIR

    conf = Path(CONF_DIR)
    settings = OmegaConf.create({"env": OmegaConf.load(conf / "env" / f"{word}.yaml")})
    tuned = conf / "tuned" / f"{word}.yaml"
    if tuned.is_file():
        settings = OmegaConf.merge(settings, OmegaConf.load(tuned))
    return OmegaConf.to_container(settings)


def tuned_settings(task: str) -> dict:
    """A task word's tuned settings (``_conf_settings``): what ``python -m experiments.train env=<task>`` uses."""
    from conf import CONF_DIR

    words = sorted(p.stem for p in (Path(CONF_DIR) / "env").glob("*.yaml") if p.stem != "gym")
    if task not in words:
        raise ConfigError(f"task={task!r} is invalid: tuned tasks are {', '.join(words)} (any other Gymnasium id: "
                          "PPO(env_id, ...) with the generic defaults)")
    return _conf_settings(task)


def generic_settings() -> dict:
    """The generic defaults of an env nobody tuned for, ``env=gym`` (``conf/env/gym.yaml``, whose ``id`` is left
    out, and ``conf/tuned/gym.yaml``): what ``PPO(env_id)`` starts from."""
    settings = _conf_settings("gym")
    settings["env"].pop("id", None)
    return settings


def export(policy: ActorCritic, dims: tuple[int, int, bool], obs_norm: Optional[ObsNormalizer],
           config: TrainConfig, global_step: int, path: Union[str, Path], fmt: str = "pt2", envs=None) -> Path:
    """Write ``policy`` (built for ``dims`` = (obs_dim, action_dim, discrete), with its observation statistics) as
    a self-contained deterministic policy file (``agents/export.py``); the action bounds come from ``envs`` or from
    one env made from ``config``."""
    own = envs is None
    if own:
        envs = make_vec_env(config.env, 1)
    try:
        spec = vector_space_spec(envs, config.env.id)
        space = declared_action_space(envs)
    finally:
        if own:
            envs.close()
    if spec.dims() != tuple(dims):
        raise ConfigError(f"checkpoint: env.id={config.env.id!r} now has spaces {spec.dims()} (obs_dim, action_dim, "
                          f"discrete); the policy was trained on {tuple(dims)}")
    box = isinstance(space, spaces.Box)
    module = DeterministicPolicy(policy, spec, obs_norm, space.low if box else None, space.high if box else None)
    metadata = {"env_id": config.env.id, "obs_dim": spec.obs_dim, "discrete": spec.discrete,
                "action_dim": spec.action_dim, "action_start": spec.action_start,
                "action_low": space.low.tolist() if box else None, "action_high": space.high.tolist() if box else None,
                "normalize_obs": obs_norm is not None, "global_step": int(global_step), "format": fmt}
    return export_policy(module, spec.obs_dim, path, fmt, metadata)


def _env_config(env: Any, num_envs: Optional[int], env_keys: dict, generic_env: dict) -> EnvConfig:
    if isinstance(env, EnvConfig):
        cfg = dataclasses.replace(env)
    elif isinstance(env, str):
        cfg = EnvConfig(**{**generic_env, "id": env})
    else:
        raise ConfigError(f"env={env!r} is invalid: give a registered Gymnasium id (e.g. 'CartPole-v1') or an "
                          "envs.vector.EnvConfig")
    if num_envs is not None:
        cfg.num_envs = num_envs
    for key, value in env_keys.items():
        setattr(cfg, key, value)
    return cfg


class PPO:
    """A PPO agent on a Gymnasium env, driven from Python.

    ``env``: a registered Gymnasium id (or an ``EnvConfig``); ``num_envs`` and the env keys (``env_kwargs`` for
    ``gym.make``, ``vectorization_mode``, ``autoreset_mode``, ``max_episode_steps``) say how it is vectorised;
    ``seed`` seeds everything (the same seed gives the Hydra run's ``seed=`` weights and episodes); every other
    keyword is an agent setting (``learning_rate``, ``clip_ratio``, ``entropy_coef``, ``normalize_obs``, …); what
    is not given takes the generic defaults of ``env=gym`` (``conf/env/gym.yaml``, ``conf/tuned/gym.yaml``), as
    ``python -m experiments.train env=gym env.id=<id>`` does. ``eval_episodes`` is the size of the final evaluation
    of each ``learn`` (0: none), ``checkpoint_every`` how often (iterations) a ``learn`` with a ``logdir`` saves its
    checkpoint, ``device`` where the networks train (``cpu``, ``cuda``). ``PPO.tuned(task)`` starts from a task's
    tuned settings instead.
    """

    budget: Optional[int] = None
    """The tuned budget (env steps) of a ``PPO.tuned`` agent: what ``learn()`` trains for when given no number."""

    def __init__(self, env: Union[str, EnvConfig] = "CartPole-v1", *, seed: int = 0, num_envs: Optional[int] = None,
                 env_kwargs: Optional[dict] = None, vectorization_mode: Optional[str] = None,
                 autoreset_mode: Optional[str] = None, max_episode_steps: Optional[int] = None,
                 eval_episodes: int = 100, checkpoint_every: int = 50, torch_threads: int = 1, device: str = "cpu",
                 **agent):
        unknown = sorted(set(agent) - set(AGENT_KEYS))
        if unknown:
            raise ConfigError(f"{unknown[0]} is not a setting of PPO: the agent's are {', '.join(AGENT_KEYS)}; the "
                              "env's are env, num_envs, env_kwargs, vectorization_mode, autoreset_mode, "
                              "max_episode_steps")
        env_keys = {k: v for k, v in (("kwargs", env_kwargs), ("vectorization_mode", vectorization_mode),
                                      ("autoreset_mode", autoreset_mode), ("max_episode_steps", max_episode_steps))
                    if v is not None}
        generic = generic_settings()  # env=gym's defaults, under what is given
        env_cfg = _env_config(env, num_envs, env_keys, generic["env"])
        agent = {**generic.get("agent", {}), **agent}
        num_steps = agent.get("num_steps", PPOConfig.num_steps)
        batch = num_steps * env_cfg.num_envs if is_int(num_steps) and is_int(env_cfg.num_envs) else 1
        self._setup(to_train_config({
            "env": dataclasses.asdict(env_cfg), "agent": agent, "seed": seed, "torch_threads": torch_threads,
            "device": device,
            "checkpoint_every": checkpoint_every, "eval": {"episodes": eval_episodes},
            "total_timesteps": max(batch, 1),  # the budget grows with each learn(); this one only validates
        }))

    @classmethod
    def tuned(cls, task: str, **kwargs) -> "PPO":
        """An agent with a task word's tuned settings (``conf/env/<task>.yaml`` and ``conf/tuned/<task>.yaml``: e.g.
        ``"halfcheetah"``, ``"lunarlander"``), the env and agent settings ``python -m experiments.train
        env=<task>`` uses; ``kwargs`` (any of ``PPO``'s, ``seed`` included) override them. ``learn()`` with no
        number trains for the tuned budget."""
        settings = tuned_settings(task)
        base = dataclasses.asdict(PPOConfig())  # a tuned file starts from PPOConfig's defaults, not env=gym's
        model = cls(EnvConfig(**settings["env"]), **{**base, **settings.get("agent", {}), **kwargs})
        model.budget = settings.get("total_timesteps", TrainConfig.total_timesteps)
        return model

    @classmethod
    def from_config(cls, config: TrainConfig) -> "PPO":
        """An agent for a validated run config (e.g. a checkpoint's), untrained."""
        model = cls.__new__(cls)
        model._setup(config)
        return model

    def _setup(self, config: TrainConfig, checkpoint: Optional[dict] = None) -> None:
        self.config = config
        torch.set_num_threads(config.torch_threads)
        self.envs = make_vec_env(config.env)
        try:
            member = Member(config.agent, config.seed, run_info={"config": config_dict(config)},
                            checkpoint_every=config.checkpoint_every)
            self.trainer = make_trainer(config, self.envs, [member])
            self.trainer.set_budget(0)
            self.exact = True
            """Whether training continues exactly as the run that wrote the loaded checkpoint would have."""
            if checkpoint is not None:
                try:
                    self.exact = self.trainer.load_state_dict(checkpoint, allow_inexact=True)
                except (RuntimeError, KeyError, ValueError) as exc:
                    raise ConfigError(f"the checkpoint does not fit its own config ({first_line(exc)[:160]})") \
                        from None
        except BaseException:
            self.envs.close()
            raise
        self._inference: Optional[tuple[int, Inference]] = None
        self._rng = np.random.default_rng(config.seed)

    # --- training ----------------------------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        """Env steps trained so far."""
        return self.trainer.global_step

    def learn(self, total_timesteps: Optional[int] = None, *, logdir: Union[str, Path, None] = None,
              callbacks: Sequence[Callback] = (), eval_every: int = 0, stop_return: Optional[float] = None,
              progress: Optional[bool] = None) -> TrainResult:
        """Train for ``total_timesteps`` more env steps (whole iterations of num_envs × num_steps), then evaluate
        deterministically (``eval_episodes``). ``logdir``: a run folder for TensorBoard (``logdir/tb``) and the
        checkpoint (``logdir/checkpoint.pt``, every ``checkpoint_every`` iterations and at the end).
        ``callbacks`` are called after every iteration (``agents.train.Callback``: return False to stop);
        ``eval_every`` (iterations) adds periodic evaluations, ``stop_return`` stops once one reaches it. Learning
        rate annealing runs over the iterations of the whole budget so far (a second ``learn`` continues the line
        from where the first ended)."""
        if total_timesteps is None:
            if self.budget is None:
                raise ConfigError("total_timesteps is required: only a PPO.tuned(...) agent has a budget of its own")
            total_timesteps = self.budget
        if not is_int(total_timesteps) or total_timesteps < 0:
            raise ConfigError(f"total_timesteps={total_timesteps!r} is invalid: must be an integer ≥ 0")
        eval_cfg = to_train_config({**config_dict(self.config), "eval": {
            "episodes": self.config.eval.episodes, "every": eval_every, "stop_return": stop_return}}).eval
        if callable(callbacks):
            callbacks = [callbacks]
        trainer = self.trainer
        trainer.set_budget(trainer.global_step + total_timesteps)
        trainer.state[0].stopped_under = None  # a stop_return reached by an earlier learn does not hold this one
        trainer.eval_every = eval_cfg.every
        member = trainer.members[0]
        member.stop_return = eval_cfg.stop_return
        self.config.total_timesteps = max(trainer.total_timesteps, trainer.batch_size)  # a valid run config
        member.run_info = {"config": config_dict(self.config)}
        trainer.progress = progress
        logger = None
        if logdir is not None:
            run_dir = Path(logdir)
            member.checkpoint_path = run_dir / CHECKPOINT_NAME
            logger = TensorBoardLogger(run_dir / "tb", purge_step=trainer.global_step + 1 if trainer.global_step
                                       else None)
            if not trainer.global_step:
                logger.text("config", "```yaml\n" + config_yaml(self.config) + "\n```")
        member.logger = logger
        try:
            result = trainer.run(callbacks=callbacks)
            if logger is not None:
                finals = final_metrics(result)
                logger.hparams(hparams_of(self.config), {k: v for k, v in finals.items() if v == v})
        finally:
            self._inference = None
            member.logger, member.checkpoint_path = None, None
            if logger is not None:
                logger.close()
        return result

    # --- saving and loading ------------------------------------------------------------------------------------
    def save(self, path: Union[str, Path]) -> Path:
        """Write the agent's checkpoint (the Hydra runs' format: weights, optimizer, statistics, generators, the
        run config) to ``path``, atomically; returns the file."""
        return save_checkpoint(self.trainer.state_dict(), path)

    @classmethod
    def load(cls, path: Union[str, Path], device: Optional[str] = None) -> "PPO":
        """An agent from a checkpoint file or run folder written by ``save``, ``learn(logdir=…)`` or a Hydra run
        (a population member's too). Training it further continues the run: exactly where the checkpoint holds
        the env state, else from fresh episodes (``exact`` says which). ``device`` trains it elsewhere than the
        run did (e.g. ``"cpu"`` for a run trained on ``cuda``)."""
        state = load_checkpoint(path, key="path")
        if state["format"] != FORMAT_VERSION:
            raise ConfigError(f"path={str(path)!r} is invalid: the checkpoint was written by an older version of this "
                              f"package (format {state['format']}, now {FORMAT_VERSION}), whose training state cannot "
                              "be restored; python -m experiments.evaluate still reads it")
        config, _ = load_policy(state, key="path")
        if device is not None:
            check_device(device)
            config.device = device
        model = cls.__new__(cls)
        model._setup(config, checkpoint=state)
        return model

    # --- acting ------------------------------------------------------------------------------------------------
    def inference(self) -> Inference:
        """The policy frozen for acting on raw observations (its observation statistics applied)."""
        key = self.trainer.global_step
        if self._inference is None or self._inference[0] != key:
            agent = self.trainer.agent
            self._inference = (key, make_inference(agent.policy, self.config.agent.rollout_backend, agent.obs_norm,
                                                   member=0))
        return self._inference[1]

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action for one observation (``[obs_dim]``) or a batch (``[B, obs_dim]``), as the env takes it: an
        index (``Discrete``, its ``start`` added) or a vector clipped to the ``Box`` bounds (as training clips)."""
        obs_dim = self.trainer.spec.obs_dim
        try:
            arr = np.asarray(obs, dtype=np.float32)
        except (TypeError, ValueError):
            raise ConfigError(f"obs is invalid: give numbers, one observation [{obs_dim}] or a batch "
                              f"[B, {obs_dim}]") from None
        if arr.ndim not in (1, 2) or arr.shape[-1] != obs_dim:
            raise ConfigError(f"obs has shape {arr.shape}: give one observation [{obs_dim}] or a batch "
                              f"[B, {obs_dim}]")
        inference = self.inference()
        batch = arr[None] if arr.ndim == 1 else arr
        actions, _ = select_actions(inference.dist_params(batch), inference.log_std, self._rng, deterministic)
        actions = self.trainer.spec.to_env(actions)
        space = declared_action_space(self.envs)
        if isinstance(space, spaces.Box):
            actions = np.clip(actions, space.low, space.high).astype(space.dtype)
        return actions[0] if arr.ndim == 1 else actions

    def evaluate(self, episodes: int = 100, seed: int = 0, deterministic: bool = True) -> EvalResult:
        """Returns and lengths of ``episodes`` episodes on fresh evaluation envs (``experiments.evaluate`` with the
        same seed runs the same episodes)."""
        if not is_int(episodes) or episodes < 1:
            raise ConfigError(f"episodes={episodes!r} is invalid: must be an integer ≥ 1")
        return evaluate_policy(self.inference(), self.trainer.make_eval_envs, episodes, seed=seed,
                               deterministic=deterministic)

    @property
    def obs_norm(self) -> Optional[ObsNormalizer]:
        """The observation statistics (None when the agent does not normalise)."""
        norm = self.trainer.agent.obs_norm
        return None if norm is None else norm.member(0)

    def export(self, path: Union[str, Path], format: str = "pt2") -> Path:
        """Write the policy as a self-contained deterministic policy (``pt2``: ``torch.export``; ``onnx``) with its
        observation statistics baked in: ``torch.export.load(path).module()(obs)`` gives the actions ``predict``
        gives (``agents/export.py``)."""
        return export(self.policy(), self.trainer.spec.dims(), self.obs_norm, self.config, self.num_timesteps, path,
                      format, self.envs)

    def policy(self) -> ActorCritic:
        """The policy as a standalone module (a copy)."""
        return self.trainer.agent.policy.member(0).eval()

    # --- resources ---------------------------------------------------------------------------------------------
    def close(self) -> None:
        self.envs.close()

    def __enter__(self) -> "PPO":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PPO({self.config.env.id!r}, seed={self.config.seed}, num_timesteps={self.num_timesteps})"
