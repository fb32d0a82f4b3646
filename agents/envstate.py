"""Save and restore the state of a Gymnasium vector env, so a resumed run continues exactly.

Only plain data is kept (numbers, NumPy arrays as tensors, RNG states as dicts), so checkpoints still load with
``torch.load(weights_only=True)``. What is captured, walking the wrapper chain:

- every wrapper's and env's plain numeric attributes (e.g. CartPole's ``state`` and ``steps``,
  ``RecordEpisodeStatistics``' running returns, ``TimeLimit``'s elapsed steps, the sync vector env's
  autoreset flags) and ``np_random`` generators;
- the sub-envs of a ``SyncVectorEnv``.

An ``AsyncVectorEnv`` keeps its envs in worker processes: its state is marked incomplete and ``restore``
refuses it. Envs whose state lives outside Python attributes (MuJoCo's simulator) are restored only as far as
these attributes go — that cannot be detected here, and the README says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv

_SKIP = {"metadata", "spec", "render_mode", "closed", "screen", "clock", "surf", "screens"}


def _plain(value: Any):
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return None
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return None


def _capture_object(obj: Any) -> dict:
    attrs = {}
    for name, value in vars(obj).items():
        if name in _SKIP:
            continue
        if isinstance(value, np.random.Generator):
            attrs[name] = {"__rng__": value.bit_generator.state}
            continue
        plain = _plain(value)
        if plain is not None or value is None:
            attrs[name] = {"__array__": plain} if isinstance(value, np.ndarray) else {"__value__": plain}
    return attrs


def _restore_object(obj: Any, attrs: dict) -> None:
    for name, boxed in attrs.items():
        if "__rng__" in boxed:
            gen = getattr(obj, name, None)
            if isinstance(gen, np.random.Generator):
                gen.bit_generator.state = boxed["__rng__"]
            else:
                gen = np.random.default_rng()
                gen.bit_generator.state = boxed["__rng__"]
                setattr(obj, name, gen)
        elif "__array__" in boxed:
            setattr(obj, name, boxed["__array__"].numpy().copy())
        else:
            setattr(obj, name, boxed["__value__"])


def _chain(env: Any) -> list:
    """The env and everything it wraps, outermost first."""
    out = [env]
    while hasattr(out[-1], "env") and out[-1].env is not out[-1]:
        out.append(out[-1].env)
    return out


class IncompleteEnvState(ValueError):
    """The saved env state cannot restore the env exactly (its envs lived in worker processes)."""


def capture(vec_env: Any) -> dict:
    chain = _chain(vec_env)
    base = chain[-1]
    state = {"layers": [_capture_object(layer) for layer in chain], "sub_envs": [],
             "complete": not isinstance(base, AsyncVectorEnv)}
    for sub in getattr(base, "envs", []) or []:
        state["sub_envs"].append([_capture_object(layer) for layer in _chain(sub)])
    return state


def restore(vec_env: Any, state: dict) -> None:
    if not state.get("complete", True):
        raise IncompleteEnvState("the run used an async vector env, whose workers' env state is not saved, so it "
                                 "cannot continue exactly: train with env.vectorization_mode=sync or auto")
    chain = _chain(vec_env)
    if len(chain) != len(state["layers"]):
        raise ValueError("the checkpoint's env was wrapped differently from this one")
    for layer, attrs in zip(chain, state["layers"]):
        _restore_object(layer, attrs)
    base = chain[-1]
    for sub, layers in zip(getattr(base, "envs", []) or [], state["sub_envs"]):
        for layer, attrs in zip(_chain(sub), layers):
            _restore_object(layer, attrs)
