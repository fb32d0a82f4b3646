"""Save and restore the state of a Gymnasium vector env, so a resumed run continues exactly — or says it cannot.

``capture(vec_env)`` walks the wrapper chain (outermost first), the sub-envs of a ``SyncVectorEnv`` and envs
held in a wrapper's attribute (e.g. the vector ``ClipAction``'s per-env ``wrapper``), and keeps every
attribute of every layer in one of three ways:

- **captured** as plain data, so checkpoints still load with ``torch.load(weights_only=True)``: ``None``,
  bools, ints, floats, strings; NumPy arrays and scalars (as tensors, dtype kept: a ``np.float32`` comes back a
  ``np.float32``); ``np.random.Generator`` (its bit generator's state); lists, tuples, dicts and deques (with
  their ``maxlen``) of any of these, nested; an ``Enum`` member held directly by an attribute (by name, restored
  as the member of the live attribute's own enum class). E.g. CartPole's ``state`` array, MountainCar's
  ``state`` tuple of ``np.float64``, ``TimeLimit``'s elapsed steps, ``RecordEpisodeStatistics``' running
  returns and its return/length deques, the sync vector env's autoreset flags and buffers.
- **ignored**, because it cannot change the env's future observations, rewards or dones: gymnasium spaces
  (``Space``; their own sampling RNG serves ``action_space.sample()``, not the env), ``EnvSpec``, modules,
  callables (functions, methods, lambdas, classes); and these names: the wrapped chain itself (``env``; a sync vector
  env's ``envs``, walked as sub-envs), ``env_fns`` (factories), ``metadata``/``_metadata``/``spec``/
  ``_cached_spec``/``render_mode``/``closed``, render objects (``screen``, ``screens``, ``clock``, ``surf``,
  ``viewer``, ``mujoco_renderer``), constructor records (``_ezpickle_args``, ``_ezpickle_kwargs``,
  ``_saved_kwargs``) and ``PassiveEnvChecker._previous_data`` (its copy of the first output, compared once for a
  warning).
- **uncaptured**: anything else — a simulator object (``LunarLander.world (Box2D.b2World)``,
  ``HopperEnv.data (mujoco.MjData)``), a list of such objects, an object-dtype array, an ``AsyncVectorEnv``'s
  workers (its envs live in other processes). The state then says ``complete: False`` and lists them in
  ``uncaptured``; ``restore`` refuses it with :class:`IncompleteEnvState` unless asked to ``allow_inexact``.

State keys: ``layers`` (one dict of boxed attributes per layer of the chain), ``sub_envs`` (the same, per
sub-env), ``complete`` and ``uncaptured`` (human-readable ``"Class.attribute (type)"`` strings, each once).
Checkpoints written before ``uncaptured`` existed are read as complete unless ``complete`` is False (only an
async vector env was marked so).

Limits: attributes the live env has but the checkpoint lacks are left as they are; objects that shared one
array before saving get their own copies after restoring.
"""

from __future__ import annotations

import types
from collections import deque
from enum import Enum
from typing import Any, List

import numpy as np
import torch
from gymnasium import Env, Space
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AsyncVectorEnv, VectorEnv

__all__ = ["IncompleteEnvState", "capture", "nothing_captured", "restore"]

_IGNORED_NAMES = frozenset({
    "env", "envs", "env_fns",
    "metadata", "_metadata", "spec", "_cached_spec", "render_mode", "closed",
    "screen", "screens", "clock", "surf", "viewer", "mujoco_renderer",
    "_ezpickle_args", "_ezpickle_kwargs", "_saved_kwargs",
    "_previous_data",
})
_IGNORED_TYPES = (Space, EnvSpec, types.ModuleType)
_LEAF_TYPES = (type(None), bool, int, float, str)
_BIT_GENERATORS = {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937,
                                                 np.random.Philox, np.random.SFC64)}
_ASYNC_WORKERS = "AsyncVectorEnv workers"
_MESSAGE_NAMES = 3  # uncaptured attributes named in the one-line message; the rest are counted


class IncompleteEnvState(ValueError):
    """The saved env state cannot restore the env exactly: ``uncaptured`` lists what was not saved."""

    def __init__(self, message: str, uncaptured: List[str]):
        super().__init__(message)
        self.uncaptured = list(uncaptured)


class _Uncapturable(Exception):
    def __init__(self, leaf: Any):
        super().__init__()
        self.leaf = leaf


def _type_name(value: Any) -> str:
    """``Box2D.b2World``, ``mujoco.MjData``, ``numpy.ndarray[object]``, ``complex``."""
    cls = type(value)
    package = cls.__module__.split(".")[0]
    name = cls.__qualname__ if package == "builtins" else f"{package}.{cls.__qualname__}"
    return f"{name}[{value.dtype}]" if isinstance(value, np.ndarray) else name


def _ignored(name: str, value: Any) -> bool:
    return name in _IGNORED_NAMES or isinstance(value, _IGNORED_TYPES) or callable(value)


def _tensor(value: Any) -> torch.Tensor:
    try:
        return torch.from_numpy(np.array(value, copy=True))
    except (TypeError, ValueError, RuntimeError):
        raise _Uncapturable(value) from None


def _encode(value: Any) -> dict:
    """Plain data for ``value`` (a one-key box saying how to rebuild it); raises ``_Uncapturable``."""
    if type(value) in _LEAF_TYPES:
        return {"__value__": value}
    if type(value) is np.ndarray:
        if value.dtype == object:
            raise _Uncapturable(value)
        return {"__array__": _tensor(value)}
    if isinstance(value, np.generic):
        return {"__scalar__": _tensor(value)}
    if isinstance(value, np.random.Generator):
        state = value.bit_generator.state
        if state.get("bit_generator") not in _BIT_GENERATORS:
            raise _Uncapturable(value)
        return {"__rng__": state}
    if type(value) is list:
        return {"__list__": [_encode(item) for item in value]}
    if type(value) is tuple:
        return {"__tuple__": [_encode(item) for item in value]}
    if type(value) is deque:
        return {"__deque__": [_encode(item) for item in value], "maxlen": value.maxlen}
    if type(value) is dict:
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    raise _Uncapturable(value)


def _decode(boxed: dict) -> Any:
    if "__value__" in boxed:
        return boxed["__value__"]
    if "__array__" in boxed:
        return boxed["__array__"].numpy().copy()
    if "__scalar__" in boxed:
        return boxed["__scalar__"].numpy()[()]
    if "__rng__" in boxed:
        return np.random.Generator(_new_bit_generator(boxed["__rng__"]))
    if "__list__" in boxed:
        return [_decode(item) for item in boxed["__list__"]]
    if "__tuple__" in boxed:
        return tuple(_decode(item) for item in boxed["__tuple__"])
    if "__deque__" in boxed:
        return deque((_decode(item) for item in boxed["__deque__"]), maxlen=boxed["maxlen"])
    if "__dict__" in boxed:
        return {_decode(k): _decode(v) for k, v in boxed["__dict__"]}
    raise ValueError(f"the checkpoint's env state holds an unknown entry {sorted(boxed)}")


def _new_bit_generator(state: dict) -> np.random.BitGenerator:
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ValueError(f"the checkpoint's env state holds an unknown bit generator {name!r}")
    bit_generator = _BIT_GENERATORS[name]()
    bit_generator.state = state
    return bit_generator


def _chain(env: Any) -> list:
    """The env and everything it wraps, outermost first."""
    out = [env]
    while hasattr(out[-1], "env") and out[-1].env is not out[-1]:
        out.append(out[-1].env)
    return out


def _capture_object(obj: Any, uncaptured: List[str]) -> dict:
    attrs = {}
    owner = type(obj).__name__
    for name, value in vars(obj).items():
        if _ignored(name, value):
            continue
        if isinstance(value, Enum):
            attrs[name] = {"__enum__": value.name, "type": type(value).__qualname__}
        elif isinstance(value, (Env, VectorEnv)):
            attrs[name] = {"__env__": _capture_chain(value, uncaptured)}
        else:
            try:
                attrs[name] = _encode(value)
            except _Uncapturable as exc:
                held = "" if exc.leaf is value else f"{_type_name(value)} holding "
                uncaptured.append(f"{owner}.{name} ({held}{_type_name(exc.leaf)})")
    return attrs


def _capture_chain(env: Any, uncaptured: List[str]) -> list:
    layers = []
    for layer in _chain(env):
        if isinstance(layer, AsyncVectorEnv):  # its envs, pipes and processes: nothing here to save
            uncaptured.append(_ASYNC_WORKERS)
            layers.append({})
        else:
            layers.append(_capture_object(layer, uncaptured))
    return layers


def capture(vec_env: Any) -> dict:
    """The vector env's state as plain data: ``layers``, ``sub_envs``, ``complete`` and ``uncaptured``."""
    uncaptured: List[str] = []
    layers = _capture_chain(vec_env, uncaptured)
    sub_envs = [_capture_chain(sub, uncaptured) for sub in getattr(_chain(vec_env)[-1], "envs", None) or []]
    uncaptured = list(dict.fromkeys(uncaptured))  # each sub-env reports the same attributes: name them once
    return {"layers": layers, "sub_envs": sub_envs, "complete": not uncaptured, "uncaptured": uncaptured}


def nothing_captured(reason: str) -> dict:
    """A state in :func:`capture`'s format that holds nothing, for envs whose state cannot be separated from
    others' (e.g. a population member's share of one vector env): ``restore`` refuses it unless ``allow_inexact``,
    and then has nothing to put back."""
    return {"layers": [], "sub_envs": [], "complete": False, "uncaptured": [reason]}


def _message(uncaptured: List[str]) -> str:
    if _ASYNC_WORKERS in uncaptured:
        return ("the run used an async vector env, whose workers' env state is not saved, so it cannot continue "
                "exactly: train with env.vectorization_mode=sync or auto")
    names = ", ".join(uncaptured[:_MESSAGE_NAMES])
    if len(uncaptured) > _MESSAGE_NAMES:
        names += f" and {len(uncaptured) - _MESSAGE_NAMES} more"
    return f"the env state was not saved in full (not captured: {names}), so the run cannot continue exactly"


def _restore_object(obj: Any, attrs: dict) -> None:
    for name, boxed in attrs.items():
        live = getattr(obj, name, None)
        if "__rng__" in boxed and isinstance(live, np.random.Generator):
            live.bit_generator.state = boxed["__rng__"]  # in place: whoever shares this generator follows
        elif "__enum__" in boxed:
            if not isinstance(live, Enum) or type(live).__qualname__ != boxed["type"]:
                raise ValueError(f"the checkpoint's env was built differently from this one "
                                 f"({type(obj).__name__}.{name} is not a {boxed['type']})")
            setattr(obj, name, type(live)[boxed["__enum__"]])
        elif "__env__" in boxed:
            if not isinstance(live, (Env, VectorEnv)):
                raise ValueError(f"the checkpoint's env was wrapped differently from this one "
                                 f"({type(obj).__name__}.{name} is not an env)")
            _restore_chain(live, boxed["__env__"])
        else:
            setattr(obj, name, _decode(boxed))


def _restore_chain(env: Any, layers: list) -> None:
    for layer, attrs in zip(_chain(env), layers):
        _restore_object(layer, attrs)


def restore(vec_env: Any, state: dict, allow_inexact: bool = False) -> None:
    """Put ``state`` (from :func:`capture`) back into a freshly made ``vec_env`` of the same config.

    Raises :class:`IncompleteEnvState` (one line, naming what was not captured) when the state is incomplete,
    before changing anything, unless ``allow_inexact``: then what was captured is restored and the caller is
    expected to reset the envs. Raises ``ValueError`` when the env is wrapped or sized differently.
    """
    uncaptured = list(state.get("uncaptured", []))
    if not state.get("complete", True) and not uncaptured:  # written before `uncaptured` existed: async only
        uncaptured = [_ASYNC_WORKERS]
    if uncaptured and not allow_inexact:
        raise IncompleteEnvState(_message(uncaptured), uncaptured)
    if uncaptured and not state["layers"] and not state["sub_envs"]:
        return  # nothing was captured (e.g. a population member's share of a vector env): nothing to put back
    chain = _chain(vec_env)
    sub_envs = getattr(chain[-1], "envs", None) or []
    if len(chain) != len(state["layers"]) or any(len(_chain(sub)) != len(layers)
                                                 for sub, layers in zip(sub_envs, state["sub_envs"])):
        raise ValueError("the checkpoint's env was wrapped differently from this one")
    if state["sub_envs"] and len(sub_envs) != len(state["sub_envs"]):
        raise ValueError(f"the checkpoint's env had {len(state['sub_envs'])} sub-envs, this one {len(sub_envs)}")
    _restore_chain(vec_env, state["layers"])
    for sub, layers in zip(sub_envs, state["sub_envs"]):
        _restore_chain(sub, layers)
