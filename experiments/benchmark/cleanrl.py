"""CleanRL as the throughput report's reference: its CartPole settings as our overrides, its own ``ppo.py`` (kept
outside this repository) run live as a fresh process, or — without ``--cleanrl-script`` — its documented figure,
labelled as such."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Optional

from experiments.benchmark.common import BenchmarkError, spread

# CleanRL's value loss is v_loss = 0.5 · mean((V − R)²) weighed by vf_coef = 0.5 (cleanrl/ppo.py); ours is the plain
# mean of squared errors, no ½ (agents/losses.py: compute_value_loss). The same gradient therefore needs
# vf_coef = 0.5 × ½ = 0.25 here. (Stable-Baselines3's value loss is F.mse_loss, plain MSE as ours: 0.25 there too.)
CLEANRL_VF_COEF = 0.25

# CleanRL's ppo.py defaults for CartPole. "~tuned" removes the defaults-list entry of conf/tuned/<env>.yaml, and
# every value is then given explicitly, so this config does not depend on our agent file either.
CLEANRL_OVERRIDES = (
    "~tuned",
    "env.num_envs=4", "agent.num_steps=128", "agent.ppo_epochs=4", "agent.num_minibatches=4",
    "agent.learning_rate=2.5e-4", "agent.anneal_lr=true", "agent.clip_ratio=0.2", "agent.entropy_coef=0.01",
    f"agent.vf_coef={CLEANRL_VF_COEF}",  # CleanRL's 0.5 on ½·MSE (see CLEANRL_VF_COEF)
    "agent.max_grad_norm=0.5", "agent.gamma=0.99", "agent.gae_lambda=0.95",
    "agent.norm_adv=true", "agent.clip_value_loss=true", "agent.target_kl=null",
    "agent.hidden_sizes=[64,64]", "agent.activation=tanh",
)

# CleanRL ppo.py's wall time as measured once live on this project's 2-core machines (README, "Speed"), used only
# when --cleanrl-script is not given. One figure: its spread is not known.
CLEANRL_DOCUMENTED = {"steps": 50_000, "wall_seconds": 17.0,
                      "source": "README, Speed: CleanRL ppo.py (gymnasium 0.29.1), its CartPole defaults, 50k steps "
                                "~17 s wall incl. start-up on this project's 2-core machines (both cores)"}
CLEANRL_DOCUMENTED_LABEL = "CleanRL ppo.py: DOCUMENTED figure (README), not a live run"
# CleanRL's ppo.py, run live: its CartPole defaults, nothing tracked or recorded, on the CPU as ours.
CLEANRL_FLAGS = ("--no-track", "--no-capture-video", "--no-cuda")
CLEANRL_SPS = re.compile(r"^SPS:\s*([0-9.]+)\s*$", re.MULTILINE)  # its per-iteration "SPS: N" print


def cleanrl_command(python: str, script: str, steps: int) -> list[str]:
    """CleanRL's ppo.py at its CartPole defaults for ``steps`` env steps: no W&B tracking, no video, CPU."""
    return [python, script, "--total-timesteps", str(steps), *CLEANRL_FLAGS]


VERSIONS_PROBE = ("import importlib.metadata as m, json, platform\n"
                  "def v(name):\n"
                  "    try:\n"
                  "        return m.version(name)\n"
                  "    except m.PackageNotFoundError:\n"
                  "        return None\n"
                  "print(json.dumps({'python': platform.python_version(), "
                  "**{n: v(n) for n in ('torch', 'gymnasium', 'numpy', 'tyro')}}))\n")


def interpreter_versions(python: str) -> dict:
    """Python and package versions of an interpreter, read from its installed metadata (nothing is imported)."""
    try:
        proc = subprocess.run([python, "-c", VERSIONS_PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkError(f"--cleanrl-python={python!r} cannot be run: {exc}") from None
    if proc.returncode != 0:
        raise BenchmarkError(f"--cleanrl-python={python!r} cannot be run (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_cleanrl(args) -> Optional[dict]:
    """The CleanRL script and interpreter, checked before any measurement (``ConfigError`` names the option);
    None when no script was given."""
    from agents.config import ConfigError

    if args.cleanrl_script is None:
        return None
    script = args.cleanrl_script.expanduser()
    if not script.is_file():
        raise ConfigError(f"--cleanrl-script={str(args.cleanrl_script)!r}: no such file (give the path of "
                          "CleanRL's cleanrl/ppo.py, fetched outside this repository)")
    python = shutil.which(os.path.expanduser(args.cleanrl_python))
    if python is None:
        raise ConfigError(f"--cleanrl-python={args.cleanrl_python!r}: not an executable (give the python of an "
                          "environment where CleanRL's ppo.py runs)")
    if args.wall_runs < 1:
        raise ConfigError("--cleanrl-script needs --wall-runs ≥ 1: CleanRL is timed as whole processes")
    return {"script": str(script.resolve()), "python": python, "versions": interpreter_versions(python)}


def cleanrl_live(wall: dict, script: str, python: str, versions: dict) -> dict:
    """The CleanRL column from its wall runs: whole-process wall time, and the steps/s ppo.py prints itself
    (its last ``SPS:`` line: env steps over its training loop's time, start-up and setup excluded)."""
    sps = []
    for out in wall["stdout"]:
        found = CLEANRL_SPS.findall(out)
        if found:
            sps.append(float(found[-1]))
    complete = len(sps) == wall["runs"]
    return {"live": True, "label": f"CleanRL ppo.py, run live (median of {wall['runs']})", "script": script,
            "python": python, "versions": versions, "command": wall["command"], "steps": wall["steps"],
            "runs": wall["runs"], "wall_seconds": wall["wall_seconds"], "cpu_seconds": wall["cpu_seconds"],
            "torch_threads": "its default (torch uses every CPU)",
            "steps_per_second": spread(sps) if complete else None,
            "steps_per_second_basis": "its own SPS print (training loop only, start-up excluded)" if complete
            else "not printed by the script"}


def cleanrl_documented() -> dict:
    ref = CLEANRL_DOCUMENTED
    wall = {"min": None, "median": ref["wall_seconds"], "max": None, "values": []}
    per_s = ref["steps"] / ref["wall_seconds"]
    return {"live": False, "label": CLEANRL_DOCUMENTED_LABEL, "source": ref["source"], "steps": ref["steps"],
            "runs": 0, "wall_seconds": wall, "cpu_seconds": None,
            "steps_per_second": {"min": None, "median": per_s, "max": None, "values": []},
            "steps_per_second_basis": "documented steps / whole-process wall (start-up included)"}
