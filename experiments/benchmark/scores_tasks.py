"""The score benchmark's tasks: the env words of ``conf/env/`` (what ``--envs`` takes), each composed with its tuned
config as ``experiments.train`` would, with its budget, evaluation episodes and published anchors — or, with
``--generic``, the same env and budget under the generic defaults a user gets from ``env=gym env.id=…``."""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from agents.config import ConfigError, first_line
from experiments.benchmark.common import compose_config
from experiments.benchmark.scores_anchors import ANCHORS, Anchor, task_key

MUJOCO_EVAL_EPISODES = 10
CHEAP_EVAL_EPISODES = 100


@dataclass
class Task:
    """One env word of ``conf/env/`` with what its tuned config composes to."""

    word: str
    env_id: str
    kwargs: dict
    budget: int
    family: str
    eval_episodes: int
    key: str
    anchors: tuple[Anchor, ...]
    train_args: tuple[str, ...] = ()
    """What selects the task's config on ``experiments.train``'s command line: ``env=<word>``, or for a generic
    run ``env=gym env.id=<id> +env.kwargs.<key>=<value>… total_timesteps=<budget>``."""
    generic: bool = False


def env_words() -> list[str]:
    """The config names of ``conf/env/`` (the words ``--envs`` takes)."""
    from conf import CONF_DIR

    return sorted(p.stem for p in (Path(CONF_DIR) / "env").glob("*.yaml"))


def env_family(env_id: str) -> str:
    """mujoco, box2d, classic_control, toy_text or other, from the registered entry point."""
    import gymnasium as gym

    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        entry = gym.spec(name).entry_point
    except Exception:  # noqa: BLE001 - not registered (yet): a user's env, cheap unless known otherwise
        return "other"
    entry = entry if isinstance(entry, str) else f"{getattr(entry, '__module__', '')}:"
    for family in ("mujoco", "box2d", "classic_control", "toy_text"):
        if f".{family}" in entry.split(":")[0]:
            return family
    return "other"


def generic_args(env_id: str, kwargs: dict, budget: int) -> list[str]:
    """``experiments.train`` overrides that train ``env_id`` (with the task's env kwargs, e.g. LunarLander's
    ``continuous``) under the generic defaults, ``env=gym``, for ``budget`` steps."""
    return ["env=gym", f"env.id={env_id}", *(f"+env.kwargs.{k}={json.dumps(v)}" for k, v in kwargs.items()),
            f"total_timesteps={budget}"]


def _validated(word: str, args: Sequence[str], steps: Optional[int]):
    from experiments.run import to_train_config

    cfg = compose_config(args, f"--envs {word}")
    try:
        return to_train_config(cfg)
    except ConfigError as exc:
        message = str(exc).replace("total_timesteps=", "--steps=") if steps is not None else str(exc)
        raise ConfigError(f"--envs {word}: {message}") from None


def compose_task(word: str, steps: Optional[int], overrides: Sequence[str], eval_episodes: Optional[int],
                 generic: bool = False) -> Task:
    """Compose ``env=<word>`` (its tuned file included) as ``experiments.train`` would; ``ConfigError`` names the
    word. Also builds one env, so that a missing extra (box2d, mujoco) or an unsupported space is refused here.
    ``generic``: the task's env and budget (``--steps`` or the tuned budget, the anchors' one) under ``env=gym``'s
    defaults instead of the tuned file."""
    from envs.vector import make_vec_env

    extra = [f"total_timesteps={steps}"] if steps is not None else []
    tc = _validated(word, [f"env={word}", *([] if generic else extra), *overrides], steps)
    train_args = [f"env={word}", *extra]
    if generic:
        train_args = generic_args(tc.env.id, dict(tc.env.kwargs), steps or tc.total_timesteps)
        tc = _validated(word, [*train_args, *overrides], steps)
    try:
        make_vec_env(tc.env, 1).close()
    except Exception as exc:  # noqa: BLE001 - gymnasium's own refusals (a missing extra, an unknown id)
        raise ConfigError(f"--envs {word}: {tc.env.id}: {first_line(exc)}") from None
    family = env_family(tc.env.id)
    episodes = eval_episodes or (MUJOCO_EVAL_EPISODES if family == "mujoco" else CHEAP_EVAL_EPISODES)
    key = task_key(tc.env.id, dict(tc.env.kwargs))
    return Task(word, tc.env.id, dict(tc.env.kwargs), tc.total_timesteps, family, episodes, key,
                ANCHORS.get(key, ()), tuple(train_args), generic)


def parse_words(spec: Optional[str]) -> list[str]:
    words = env_words()
    if not spec:
        raise ConfigError(f"--mode scores needs --envs WORD[,WORD…] (configs of conf/env/: {', '.join(words)}; "
                          "or 'all': every one with a published anchor)")
    asked = [w.strip() for w in spec.split(",") if w.strip()]
    if asked == ["all"]:
        return [w for w in words if w != "gym"]  # filtered to anchored tasks once composed
    unknown = [w for w in asked if w not in words]
    if unknown:
        raise ConfigError(f"--envs: unknown env {', '.join(map(repr, unknown))} (the words are the configs of "
                          f"conf/env/: {', '.join(words)})")
    return list(dict.fromkeys(asked))
