"""Policy export: the exported file, run in a fresh process with only torch (or onnxruntime), picks the package's
actions on 1,000 observations recorded from real episodes, observation statistics included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents import PPO

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter, outside the repository: loads the file with torch (or onnxruntime) alone and proves
# that neither this package nor Gymnasium was imported.
LOADER = """
import json, sys
import numpy as np
path, fmt, obs_file, out_file = sys.argv[1:5]
obs = np.load(obs_file)
if fmt == "pt2":
    import torch
    extra = {"metadata.json": ""}
    actions = torch.export.load(path, extra_files=extra).module()(torch.from_numpy(obs)).numpy()
    meta = extra["metadata.json"]
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(path)
    actions = session.run(None, {"obs": obs})[0]
    meta = session.get_modelmeta().custom_metadata_map["metadata.json"]
np.save(out_file, actions)
open(out_file + ".json", "w").write(meta)
assert not any(m == "agents" or m.startswith(("agents.", "gymnasium", "envs")) for m in sys.modules), "imported"
"""


def recorded_observations(model: PPO, env_id: str, n: int = 1000) -> np.ndarray:
    """n raw observations from episodes of a real env played with the model's sampled actions."""
    env = gym.make(env_id)
    rows, (obs, _) = [], env.reset(seed=0)
    while len(rows) < n:
        rows.append(obs)
        obs, _, terminated, truncated, _ = env.step(model.predict(obs, deterministic=False))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.asarray(rows, dtype=np.float32)


def run_exported(tmp_path: Path, path: Path, fmt: str, obs: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """The exported file's actions on ``obs`` (``meta``, if given, receives the metadata it carries)."""
    np.save(tmp_path / "obs.npy", obs)
    out = subprocess.run([sys.executable, "-c", LOADER, str(path), fmt, str(tmp_path / "obs.npy"),
                          str(tmp_path / "actions.npy")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    if meta is not None:
        meta.update(json.loads((tmp_path / "actions.npy.json").read_text()))
    return np.load(tmp_path / "actions.npy")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A discrete policy (CartPole) and a Box policy with observation normalisation (Pendulum), briefly trained."""
    out = {}
    for env_id, keys in (("CartPole-v1", {"normalize_obs": False}), ("Pendulum-v1", {"normalize_obs": True})):
        model = PPO(env_id, seed=0, num_envs=4, num_steps=64, eval_episodes=0, **keys)
        model.learn(4 * 4 * 64)
        out[env_id] = model
    return out


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_exported_policy_picks_the_package_actions(trained, tmp_path, env_id, fmt):
    model = trained[env_id]
    obs = recorded_observations(model, env_id)
    path = model.export(tmp_path / f"policy.{fmt}", format=fmt)
    meta: dict = {}
    actions = run_exported(tmp_path, path, fmt, obs, meta)
    expected = model.predict(obs)
    assert meta["env_id"] == env_id and meta["global_step"] == model.num_timesteps
    assert meta["normalize_obs"] == (env_id == "Pendulum-v1")
    assert actions.shape == expected.shape
    if env_id == "CartPole-v1":
        assert actions.dtype.kind == "i" and np.array_equal(actions, expected)
        assert 0 < expected.mean() < 1  # both actions occur: the comparison is not of a constant
    else:
        assert np.allclose(actions, expected, atol=1e-5, rtol=1e-5)
        assert np.abs(actions).max() <= 2.0


def test_the_statistics_are_baked_in(trained, tmp_path):
    """Pendulum's exported policy applies the trained observation statistics: the raw policy on raw observations
    acts differently."""
    model = trained["Pendulum-v1"]
    assert not np.allclose(model.obs_norm.rms.var, 1.0)
    obs = recorded_observations(model, "Pendulum-v1", n=200)
    exported = run_exported(tmp_path, model.export(tmp_path / "p.pt2"), "pt2", obs)
    import torch

    with torch.no_grad():
        raw = np.clip(model.policy().dist_params(torch.from_numpy(obs)).numpy(), -2, 2)
    assert not np.allclose(exported, raw, atol=1e-3)


def test_export_command(tmp_path):
    """python -m experiments.export on a run folder: writes policy.pt2 beside the checkpoint, prints JSON; a bad
    format is one line and exit 2, with nothing written."""
    model = PPO("CartPole-v1", seed=1, num_envs=4, num_steps=32, eval_episodes=0)
    model.learn(256, logdir=tmp_path / "run")
    cmd = [sys.executable, "-m", "experiments.export", f"checkpoint={tmp_path / 'run'}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["output"] == str((tmp_path / "run" / "policy.pt2").resolve()) and summary["global_step"] == 256
    obs = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    assert np.array_equal(run_exported(tmp_path, Path(summary["output"]), "pt2", obs), model.predict(obs))
    bad = subprocess.run(cmd + ["format=tflite", f"output={tmp_path / 'x.bin'}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: format='tflite' is invalid: must be one of pt2, onnx"
    assert not (tmp_path / "x.bin").exists()
    missing = subprocess.run([sys.executable, "-m", "experiments.export"], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "checkpoint is mandatory" in missing.stderr
