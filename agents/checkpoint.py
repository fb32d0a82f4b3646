"""Checkpoint files: written atomically, loaded without running code from the file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch

from agents.config import ConfigError, first_line

FORMAT_VERSION = 2
"""2: the trainer state has one generator per stream (``agents/seeding.py``) and the env-state record says what
it could not capture. Format 1 checkpoints still load for evaluation and as init/ref checkpoints, not for resume."""
READABLE_FORMATS = (1, 2)
CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``state`` to ``path`` so that a crash at any moment leaves either the old or the new file.

    The bytes go to a temporary file in the same folder, are fsynced, then renamed over ``path`` (an atomic
    replace on POSIX), and the folder entry is fsynced too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint gets the permissions of any other file
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def resolve_checkpoint(path: Union[str, Path], key: str = "checkpoint") -> Path:
    """A checkpoint file, or a run folder holding one (``<run>/checkpoint.pt``)."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise ConfigError(f"{key}={str(path)!r} is invalid: no checkpoint file there "
                          f"(give a {CHECKPOINT_NAME} file or the run folder that holds one)")
    return p


def load_checkpoint(path: Union[str, Path], key: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``: tensors and plain containers only."""
    p = resolve_checkpoint(path, key)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a corrupt or foreign file
        reason = first_line(exc)
        raise ConfigError(f"{key}={str(path)!r} is invalid: not a readable checkpoint ({reason[:160]})") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        raise ConfigError(f"{key}={str(path)!r} is invalid: not a checkpoint of this package "
                          f"(format {FORMAT_VERSION})")
    return state


def holds_env_state(state: dict[str, Any]) -> Union[bool, None]:
    """Whether a checkpoint holds its envs' whole state (``agents/envstate.py``), so that a resume continues
    exactly; None when the checkpoint does not say."""
    env_state = state.get("collector", {}).get("env")
    return bool(env_state.get("complete", True)) if isinstance(env_state, dict) else None
