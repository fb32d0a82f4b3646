"""Parallel local jobs through hydra-joblib-launcher (a core dependency): a real multirun, two workers."""

import subprocess
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.checkpoint import load_checkpoint


def test_joblib_launcher_runs_the_jobs_of_a_multirun(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
         "env=bandit", "agent.clip_ratio=0.1,0.3", "seed=0,1", "total_timesteps=256", "eval.episodes=4",
         f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout
    runs = sorted(p.name for p in tmp_path.iterdir() if (p / ".hydra").is_dir())
    assert runs == [f"agent.clip_ratio={c},env=bandit,eval.episodes=4,seed={s},total_timesteps=256"
                    for c in ("0.1", "0.3") for s in (0, 1)]
    for name in runs:
        state = load_checkpoint(tmp_path / name / "checkpoint.pt")
        assert state["global_step"] == 256
        clip = float(name.split(",")[0].split("=")[1])
        assert state["run"]["config"]["agent"]["clip_ratio"] == clip
        acc = EventAccumulator(str(tmp_path / name / "tb"))
        acc.Reload()
        assert [e.step for e in acc.Scalars("losses/policy_loss")] == [128, 256]
    # event files are named ...tfevents.<time>.<host>.<pid>.<n>: the jobs ran in more than one worker process
    pids = {f.name.split(".")[-2] for name in runs for f in (tmp_path / name / "tb").iterdir()}
    assert len(pids) >= 2


def test_a_failing_job_does_not_stop_the_other_jobs_of_a_multirun(tmp_path):
    """Job 0 diverges (NaN) and job 1 is fine: both run, job 0's error is one line, the sweep exits 3 at the end."""
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", "-m", "env=gym", "env.id=Pendulum-v1",
         "agent.init_log_std=100,0", "total_timesteps=2048", "eval.episodes=1", f"hydra.sweep.dir={tmp_path}"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: iteration 1: non-finite value in loss policy_loss; the run stopped and its last good "
                      "checkpoint is kept",
                      "error: a job of the multirun failed: iteration 1: non-finite value in loss policy_loss; the "
                      "run stopped and its last good checkpoint is kept"]
    assert "Traceback" not in proc.stderr
    good = tmp_path / "agent.init_log_std=0,env.id=Pendulum-v1,env=gym,eval.episodes=1,total_timesteps=2048"
    assert load_checkpoint(good / "checkpoint.pt")["global_step"] == 2048
