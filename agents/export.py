"""Policy export: a trained policy as one self-contained file that needs only PyTorch to run.

The exported module maps a batch of raw observations ``[B, obs_dim]`` (float32) to the deterministic actions the
package takes — the argmax action (``Discrete``, with its ``start`` added) or the Gaussian mean clipped to the
``Box`` bounds (as the training envs clip) — with the observation statistics baked in as constants, so a deployed
policy cannot be fed un-normalised observations. Format ``pt2`` is ``torch.export``'s program (load it with
``torch.export.load(path).module()``); ``onnx`` (the ``onnx`` extra) is an ONNX graph for onnxruntime and other
runtimes. A JSON record of the env id, the spaces and the training step travels inside the file (``pt2``:
``extra_files["metadata.json"]``; ``onnx``: the model's ``metadata_props``).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from agents.config import ConfigError, first_line
from agents.networks import ActorCritic
from agents.normalization import EPS, ObsNormalizer
from agents.spaces import SpaceSpec

FORMATS = {"pt2": ".pt2", "onnx": ".onnx"}
METADATA = "metadata.json"


class DeterministicPolicy(nn.Module):
    """Raw observations → the env's deterministic actions, normalisation included (see the module docstring)."""

    def __init__(self, policy: ActorCritic, spec: SpaceSpec, obs_norm: Optional[ObsNormalizer] = None,
                 low: Optional[np.ndarray] = None, high: Optional[np.ndarray] = None):
        super().__init__()
        self.policy = policy.eval()
        self.discrete = spec.discrete
        self.action_start = int(spec.action_start)
        self.normalize = obs_norm is not None
        if obs_norm is not None:  # ObsNormalizer.apply's arithmetic, in float64 as there
            self.register_buffer("obs_mean", torch.as_tensor(np.asarray(obs_norm.rms.mean[0], np.float64)))
            self.register_buffer("obs_scale", torch.as_tensor(np.sqrt(np.asarray(obs_norm.rms.var[0], np.float64)
                                                                       + EPS)))
            self.clip_obs = float(obs_norm.clip)
        self.bounded = low is not None and high is not None
        if self.bounded:
            self.register_buffer("low", torch.as_tensor(np.asarray(low, np.float32)))
            self.register_buffer("high", torch.as_tensor(np.asarray(high, np.float32)))
        self.eval().requires_grad_(False)  # an inference program: its outputs carry no autograd graph

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs
        if self.normalize:
            x = ((x.double() - self.obs_mean) / self.obs_scale).clamp(-self.clip_obs, self.clip_obs).float()
        params = self.policy.dist_params(x)
        if self.discrete:
            return params.argmax(dim=-1) + self.action_start
        if self.bounded:
            return torch.maximum(torch.minimum(params, self.high), self.low)
        return params


def export_policy(module: DeterministicPolicy, obs_dim: int, path: Union[str, Path], fmt: str = "pt2",
                  metadata: Optional[dict] = None) -> Path:
    """Write ``module`` to ``path`` in format ``fmt`` (``pt2`` or ``onnx``), with a dynamic batch size; returns the
    file. The folder is created; an existing file is replaced only once the new one is complete."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is invalid: must be one of {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{FORMATS[fmt]}")  # torch.export.save wants its own suffix
    example = torch.zeros(2, obs_dim)
    meta = json.dumps(metadata or {})
    try:
        with torch.no_grad():
            if fmt == "pt2":
                program = torch.export.export(module, (example,),
                                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
                torch.export.save(program, str(tmp), extra_files={METADATA: meta})
            else:
                _export_onnx(module, example, tmp, meta)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path, meta: str) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ConfigError('format=onnx needs the onnx extra: pip install -e ".[onnx]"') from None
    quiet = logging.getLogger("torch.onnx")  # the exporter logs which optional ops it skips (torchvision's)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():  # torch's own use of a deprecated pytree name, not ours to mend
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            torch.onnx.export(module, (example,), str(path), input_names=["obs"], output_names=["action"],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), dynamo=True, verbose=False)
    except Exception as exc:  # noqa: BLE001 - the exporter's own failures, e.g. a missing onnxscript
        raise ConfigError(f"format=onnx failed: {first_line(exc)[:200]}") from None
    finally:
        quiet.setLevel(level)
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA, meta
    onnx.save(model, str(path))
