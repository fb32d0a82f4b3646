"""Evaluate a trained policy: ``python -m experiments.evaluate checkpoint=PATH [episodes=100]`` (``ppo-evaluate``).

The env and the network are rebuilt from the config saved in the checkpoint, so only the checkpoint is needed.
The result is printed as ``mean ± std``; the last line is JSON for scripts::

    python -m experiments.evaluate checkpoint=outputs/2026-11-21/12-00-00 episodes=100
    python -m experiments.evaluate checkpoint=run/checkpoint.pt deterministic=false seed=3
    python -m experiments.evaluate checkpoint=run video=true          # one episode to run/videos/
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import hydra
import numpy as np
import torch
from gymnasium import spaces
from omegaconf import DictConfig

from agents.api import load_policy, policy_dims
from agents.checkpoint import load_checkpoint, resolve_checkpoint
from agents.config import ConfigError, first_line
from agents.evaluation import EvalResult, evaluate_policy
from agents.normalization import ObsNormalizer
from agents.run_config import to_record
from agents.inference import Inference, make_inference, select_actions
from agents.spaces import space_spec
from conf import CONF_DIR
from envs.vector import env_spec, make_vec_env, space_dims
from experiments.config import CHECKPOINT_MISSING, EvaluateConfig, TrainConfig
from experiments.entry import hydra_one_line_errors, user_errors


def to_evaluate_config(cfg: DictConfig | dict) -> EvaluateConfig:
    """The typed, validated evaluation config (raises ``ConfigError`` naming the key)."""
    return to_record(EvaluateConfig, cfg, missing=CHECKPOINT_MISSING)


def _make_render_env(train_cfg: TrainConfig) -> gym.Env:
    env_cfg = train_cfg.env
    kwargs = dict(env_cfg.kwargs)
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = env_cfg.max_episode_steps
    spec = env_spec(env_cfg.id)  # imports the module of a 'module:EnvId' id, as training does
    creator = spec.entry_point if callable(spec.entry_point) else gym.envs.registration.load_env_creator(
        spec.entry_point)
    modes = getattr(creator, "metadata", {}).get("render_modes")
    if modes is not None and "rgb_array" not in modes:
        raise ConfigError(f"video=true is unavailable: env.id={env_cfg.id!r} has no rgb_array rendering "
                          f"(render_modes: {list(modes)})")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws off-screen; no display needed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an undeclared render_mode warns; a refusal raises, handled below
            env = gym.make(spec.id, render_mode="rgb_array", **kwargs)
    except (TypeError, ValueError, gym.error.Error) as exc:
        raise ConfigError(f"video=true is unavailable: env.id={env_cfg.id!r} could not be made with "
                          f"render_mode='rgb_array' ({first_line(exc)[:160]})") from None
    return env


def record_video(train_cfg: TrainConfig, inference: Inference, video_dir: Path, seed: int,
                 deterministic: bool, name_prefix: str = "eval") -> Path:
    """Record one episode of the policy: an MP4 through Gymnasium's ``RecordVideo`` when moviepy is installed,
    else an animated GIF written with Pillow. Returns the file written."""
    try:
        import moviepy  # noqa: F401
        have_moviepy = True
    except ImportError:
        have_moviepy = False
    env = _make_render_env(train_cfg)
    frames: list[np.ndarray] = []
    if have_moviepy:
        env = gym.wrappers.RecordVideo(env, str(video_dir), episode_trigger=lambda _: True,
                                       name_prefix=name_prefix, disable_logger=True)
    rng = np.random.default_rng(seed)
    act_space = env.action_space
    spec = space_spec(env.observation_space, act_space, train_cfg.env.id)
    try:
        obs, _ = env.reset(seed=seed)
        if not have_moviepy:
            frames.append(env.render())
        done = False
        while not done:
            params = inference.dist_params(np.asarray(obs, dtype=np.float32)[None])
            actions, _ = select_actions(params, inference.log_std, rng, deterministic)
            if isinstance(act_space, spaces.Discrete):
                action = int(spec.to_env(actions)[0])
            else:  # as the training envs do (ClipAction): the Gaussian sample is clipped to the bounds
                action = np.clip(actions[0], act_space.low, act_space.high).astype(act_space.dtype)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            if not have_moviepy:
                frames.append(env.render())
    except gym.error.DependencyNotInstalled as exc:
        raise ConfigError(f"video=true is unavailable for env.id={train_cfg.env.id!r}: "
                          f"{first_line(exc)} (or: pip install 'ppo-gym[video]')") from None
    finally:
        env.close()
    if have_moviepy:
        return video_dir / f"{name_prefix}-episode-0.mp4"
    from PIL import Image

    video_dir.mkdir(parents=True, exist_ok=True)
    fps = int(env.metadata.get("render_fps") or 30)
    path = video_dir / f"{name_prefix}-episode-0.gif"
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames if frame is not None]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    return path


def run_evaluation(cfg: DictConfig | dict) -> dict[str, Any]:
    """Evaluate the checkpoint of ``cfg``; prints the result (last line JSON) and returns it as a dict."""
    eval_cfg = to_evaluate_config(cfg)
    path = resolve_checkpoint(eval_cfg.checkpoint)
    state = load_checkpoint(path)
    train_cfg, policy = load_policy(state)
    torch.set_num_threads(train_cfg.torch_threads)
    env_cfg = train_cfg.env
    trained_dims = policy_dims(state)

    def make_envs(n: int):
        envs = make_vec_env(env_cfg, n)
        if space_dims(envs) != trained_dims:
            envs.close()
            raise ConfigError(f"checkpoint: env.id={env_cfg.id!r} now has spaces {space_dims(envs)} "
                              f"(obs_dim, action_dim, discrete); the policy was trained on {trained_dims}")
        return envs

    # the observation statistics travel with the policy: applied frozen, as in the training run's evaluations
    obs_norm = ObsNormalizer.from_agent_state(state["agent"])
    inference = make_inference(policy, train_cfg.agent.rollout_backend, obs_norm)
    video: Optional[Path] = None
    if eval_cfg.video:  # first: a missing renderer fails before the evaluation's work
        video_dir = Path(eval_cfg.video_dir) if eval_cfg.video_dir is not None else path.parent / "videos"
        video = record_video(train_cfg, inference, video_dir, eval_cfg.seed, eval_cfg.deterministic)
    result: EvalResult = evaluate_policy(inference, make_envs, eval_cfg.episodes, seed=eval_cfg.seed,
                                         deterministic=eval_cfg.deterministic)
    mode = "deterministic" if eval_cfg.deterministic else "sampled actions"
    print(f"{env_cfg.id} after {int(state.get('global_step', 0))} steps: return {result.mean:.2f} ± "
          f"{result.std:.2f} over {len(result.returns)} episodes ({mode}, seed {eval_cfg.seed}; "
          f"mean length {result.lengths.mean():.1f})")
    if video is not None:
        print(f"video: {video}")
    summary = {"mean_return": result.mean, "std_return": result.std, "episodes": int(len(result.returns)),
               "mean_length": float(result.lengths.mean()), "deterministic": eval_cfg.deterministic,
               "seed": eval_cfg.seed, "env_id": env_cfg.id, "global_step": int(state.get("global_step", 0)),
               "checkpoint": str(path.resolve()), "video": None if video is None else str(video)}
    print(json.dumps(summary), flush=True)
    return summary


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def hydra_main(cfg: DictConfig) -> float:
    """Compose → load the checkpoint → evaluate → return the mean return."""
    with user_errors():
        return run_evaluation(cfg)["mean_return"]


def main() -> None:
    hydra_one_line_errors(hydra_main)


if __name__ == "__main__":
    main()
