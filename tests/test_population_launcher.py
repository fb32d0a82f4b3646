"""``hydra/launcher=population`` (hydra_plugins/population_launcher): real Hydra multiruns on tiny bandit runs.

The launcher runs each job through Hydra, collects the validated jobs, trains them with
``experiments.population.train_population`` and settles each job's result. These tests check what a user of a
multirun sees (run folders, ``.hydra/`` records, event files, checkpoints, errors, the sweep report) and the
grouping of jobs into populations (``group_jobs``) on composed configs.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus
from hydra.errors import ConfigCompositionException
from hydra.experimental.callback import Callback

from agents.checkpoint import load_checkpoint
from agents.config import ConfigError
from experiments import population, sweep_report
from experiments.population import MEMBER_KEYS, PopulationJob, describe, flat_config, group_jobs
from helpers import CONF, compose_cfg, read_scalars, run_main

TINY = ["env=bandit", "total_timesteps=256", "eval.episodes=4"]
CLIPS = ("0.1", "0.2")
SEEDS = ("0", "1")
REPO = CONF.parent
TARGET = "hydra_plugins.population_launcher.population_launcher.PopulationLauncher"


def train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``python -m experiments.train ARGS`` in a fresh process, run from the repository root (whose
    ``hydra_plugins/`` Hydra scans), with Hydra's one-line error reporting as a user gets it."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


def job_name(clip: str, seed: str) -> str:
    return f"agent.clip_ratio={clip},env=bandit,eval.episodes=4,seed={seed},total_timesteps=256"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``-m agent.clip_ratio=0.1,0.2 seed=0,1 hydra/launcher=population`` on the bandit, at most 3 members per
    population: the group of 4 is split into two populations of 2."""
    root = tmp_path_factory.mktemp("population") / "multirun"
    proc = train(["-m", "hydra/launcher=population", "hydra.launcher.max_members=3",
                  f"agent.clip_ratio={','.join(CLIPS)}", f"seed={','.join(SEEDS)}", *TINY, f"hydra.sweep.dir={root}"],
                 cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc


# ------------------------------------------------------------------------------------------- a real multirun


def test_every_job_gets_its_folder_records_checkpoint_and_log(sweep):
    root, proc = sweep
    assert "Launching 4 jobs as populations of at most 3 members" in proc.stdout
    assert "population 1/2: 2 members differing in seed" in proc.stdout
    assert "population 2/2: 2 members differing in seed" in proc.stdout
    assert (root / "multirun.yaml").is_file()
    runs = sorted(p.name for p in root.iterdir() if (p / ".hydra").is_dir())
    assert runs == sorted(job_name(c, s) for c in CLIPS for s in SEEDS)
    nums = set()
    for clip in CLIPS:
        for seed in SEEDS:
            run = root / job_name(clip, seed)
            cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
            assert (cfg["agent"]["clip_ratio"], cfg["seed"], cfg["env"]["id"]) == (float(clip), int(seed),
                                                                                     "SoftmaxBandit-v0")
            overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
            assert sorted(overrides) == sorted([f"agent.clip_ratio={clip}", f"seed={seed}", *TINY])
            hydra = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())["hydra"]
            assert hydra["runtime"]["output_dir"] == str(run)
            nums.add(hydra["job"]["num"])
            state = load_checkpoint(run / "checkpoint.pt")
            assert state["global_step"] == 256
            assert state["run"]["config"]["agent"]["clip_ratio"] == float(clip)
            assert state["run"]["config"]["seed"] == int(seed)
            log = (run / "train.log").read_text()  # Hydra's per-job log file holds that job's own lines
            assert f"run dir: {run}" in log and f"checkpoint: {run / 'checkpoint.pt'}" in log
            assert log.count("run dir: ") == 1
    assert nums == {0, 1, 2, 3}


def test_a_member_logs_the_same_scalars_as_a_solo_run(sweep, tmp_path, monkeypatch, capsys):
    root, _ = sweep
    solo = tmp_path / "solo"
    code, err = run_main(monkeypatch, capsys, "agent.clip_ratio=0.1", "seed=0", *TINY, f"hydra.run.dir={solo}")
    assert code == 0, err
    ours = read_scalars(root / job_name("0.1", "0") / "tb")
    theirs = read_scalars(solo / "tb")
    assert set(ours) == set(theirs)
    for tag in ours:
        if tag.startswith(("losses/", "eval/")):
            assert [step for step, _ in ours[tag]] == [step for step, _ in theirs[tag]], tag


def test_the_sweep_report_reads_a_population_sweep(sweep, tmp_path, capsys):
    root, _ = sweep
    out = tmp_path / "report"
    assert sweep_report.main([str(root), "--out", str(out)]) == 0, capsys.readouterr().err
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(float(r["agent.clip_ratio"]) for r in rows) == [0.1, 0.2]
    assert all(int(r["n_seeds"]) == 2 for r in rows)


def test_a_failing_job_fails_alone_and_the_sweep_reports_it_in_one_line(tmp_path):
    """clip_ratio=-1 is refused when the job registers; a missing init_checkpoint only when its population trains
    (a second population: init_checkpoint must be equal inside one). The good job still trains; the sweep ends
    as with the basic and joblib launchers: one ``error:`` line per failed job, then the first failure again.
    (init_checkpoint is left out of the run folders' names, so the folders are named by job number here.)"""
    missing = tmp_path / "missing"
    root = tmp_path / "multirun"
    proc = train(["-m", "hydra/launcher=population", "agent.clip_ratio=-1,0.2", f"init_checkpoint=null,{missing}",
                  *TINY, f"hydra.sweep.dir={root}", "hydra.sweep.subdir=${hydra.job.num}"], cwd=REPO)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    refused = "agent.clip_ratio=-1.0 is invalid: must be > 0 (typically 0.1–0.3)"
    no_file = f"init_checkpoint={str(missing)!r} is invalid: no checkpoint file there"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors[:2] == [f"error: {refused}"] * 2
    assert len(errors) == 4 and errors[2].startswith(f"error: {no_file}")
    assert errors[3] == f"error: a job of the multirun failed: {refused}"
    assert "population 1/2: 1 member" in proc.stdout and "population 2/2: 1 member" in proc.stdout
    assert sorted(p.name for p in root.iterdir() if (p / ".hydra").is_dir()) == ["0", "1", "2", "3"]
    trained = [p.name for p in root.iterdir() if (p / "checkpoint.pt").is_file()]
    assert trained == ["2"]  # clip_ratio=0.2 without init_checkpoint
    cfg = yaml.safe_load((root / "2" / ".hydra" / "config.yaml").read_text())
    assert (cfg["agent"]["clip_ratio"], cfg["init_checkpoint"]) == (0.2, None)


class JobEvents(Callback):
    """A Hydra callback (``+hydra.callbacks.events._target_=test_population_launcher.JobEvents``) that records
    when each job starts and ends, and what its ``JobReturn`` holds when it ends."""

    events: list[tuple] = []

    def on_job_start(self, config, **kwargs) -> None:
        self.events.append(("start", config.hydra.job.num))

    def on_job_end(self, config, job_return, **kwargs) -> None:
        run = Path(HydraConfig.get().runtime.output_dir)
        self.events.append(("end", HydraConfig.get().job.num, job_return.status, type(job_return._return_value),
                            (run / "checkpoint.pt").is_file()))


def test_jobs_end_after_their_population_trained(monkeypatch, capsys, tmp_path):
    """on_job_start fires when a job registers, on_job_end once it has trained, with its final return (or its
    error) in the JobReturn and its own HydraConfig set."""
    JobEvents.events.clear()
    code, err = run_main(monkeypatch, capsys, "-m", "hydra/launcher=population", "agent.clip_ratio=-1,0.2", *TINY,
                         f"hydra.sweep.dir={tmp_path}",
                         "+hydra.callbacks.events._target_=test_population_launcher.JobEvents")
    assert code == 2, err
    assert JobEvents.events == [("start", 0), ("start", 1),
                                ("end", 0, JobStatus.FAILED, ConfigError, False),
                                ("end", 1, JobStatus.COMPLETED, float, True)]


@pytest.mark.parametrize("override, message", [
    ("hydra.launcher.workers=2", "hydra.launcher.workers"),
    ("hydra.launcher.n_jobs=0", "error: hydra.launcher.n_jobs=0 is invalid: must be an integer ≥ 1"),
    ("hydra.launcher.max_members=0", "error: hydra.launcher.max_members=0 is invalid: must be an integer ≥ 1"),
])
def test_a_bad_launcher_setting_is_refused_in_one_line(monkeypatch, capsys, tmp_path, override, message):
    code, err = run_main(monkeypatch, capsys, "-m", "hydra/launcher=population", override, *TINY,
                         f"hydra.sweep.dir={tmp_path}")
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert message in err
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no job ran


# ------------------------------------------------------------------------------------------- composition


def compose_with_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_the_ready_sweep_composes_with_the_population_launcher():
    cfg = compose_with_hydra(["sweep=clip_entropy", "hydra/launcher=population", "hydra.launcher.max_members=8"])
    assert cfg.hydra.launcher._target_ == TARGET
    assert cfg.hydra.launcher.max_members == 8
    assert dict(cfg.hydra.sweeper.params) == {"agent.clip_ratio": "0.1,0.2,0.3", "agent.entropy_coef": "0.0,0.01",
                                              "seed": "0,1,2"}
    default = compose_with_hydra(["hydra/launcher=population"]).hydra.launcher.max_members
    assert default == population.DEFAULT_MAX_MEMBERS == 64
    with pytest.raises(ConfigCompositionException):
        compose_with_hydra(["hydra/launcher=population", "hydra.launcher.max_members=many"])


# ------------------------------------------------------------------------------------------- grouping


def jobs_of(*override_lists: list[str]) -> list[PopulationJob]:
    return [PopulationJob(cfg=compose_cfg(["env=bandit", *o]), output_dir=f"run{i}", overrides=list(o))
            for i, o in enumerate(override_lists)]


def test_member_keys_are_keys_of_the_run_config():
    assert set(MEMBER_KEYS) <= set(flat_config(compose_cfg(["env=bandit"])))


def test_jobs_that_differ_only_in_member_keys_share_a_population():
    jobs = jobs_of([], ["seed=5", "agent.clip_ratio=0.3", "agent.entropy_coef=0.02"],
                   ["agent.learning_rate=0.01", "agent.gamma=0.9", "agent.target_kl=0.02", "agent.norm_adv=false"],
                   ["eval.stop_return=0.5", "progress=false", "checkpoint_every=3", "torch_threads=2"])
    assert group_jobs(jobs) == [[0, 1, 2, 3]]
    assert describe(1, 1, jobs[:2]) == ("population 1/1: 2 members differing in agent.clip_ratio, "
                                        "agent.entropy_coef, seed")


def test_jobs_that_differ_in_shared_keys_are_split():
    jobs = jobs_of([], ["env.num_envs=4"], ["agent.num_steps=8"], ["total_timesteps=512"], ["seed=3"],
                   ["env.num_envs=4", "seed=4"], ["resume=somewhere"], ["resume=somewhere"])
    assert group_jobs(jobs) == [[0, 4], [1, 5], [2], [3], [6], [7]]


def test_a_group_over_the_member_cap_is_split_evenly():
    jobs = jobs_of(*[[f"seed={s}"] for s in range(5)])
    assert group_jobs(jobs, max_members=2) == [[0, 1], [2, 3], [4]]
    assert group_jobs(jobs, max_members=4) == [[0, 1, 2], [3, 4]]
    with pytest.raises(ValueError):
        group_jobs(jobs, max_members=0)


def test_populations_are_spread_over_the_workers():
    jobs = jobs_of(*[[f"seed={s}"] for s in range(6)], ["resume=somewhere"])
    groups = group_jobs(jobs)
    assert groups == [[0, 1, 2, 3, 4, 5], [6]]
    assert population.spread_over_workers(groups, jobs, 2) == groups  # already one per worker
    assert population.spread_over_workers(groups, jobs, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert population.spread_over_workers([[6]], jobs, 4) == [[6]]  # a resumed job stays alone
    assert population.spread_over_workers([[0, 1, 2]], jobs, 8) == [[0], [1], [2]]


def test_worker_processes_train_the_same_runs(sweep, tmp_path):
    """hydra.launcher.n_jobs=2: the populations train in two worker processes; every job ends as it does in one
    process (same final evaluation, checkpoint and logged curve)."""
    root, _ = sweep
    proc = train(["-m", "hydra/launcher=population", "hydra.launcher.n_jobs=2", f"agent.clip_ratio={','.join(CLIPS)}",
                  f"seed={','.join(SEEDS)}", *TINY, f"hydra.sweep.dir={tmp_path}"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "populations trained in" in proc.stdout and "by 2 workers" in proc.stdout
    for clip in CLIPS:
        for seed in SEEDS:
            ours = load_checkpoint(tmp_path / job_name(clip, seed))
            theirs = load_checkpoint(root / job_name(clip, seed))
            assert ours["global_step"] == theirs["global_step"] == 256
            assert ours["final_eval"]["returns"].tolist() == pytest.approx(theirs["final_eval"]["returns"].tolist())
            curve = [v for _, v in read_scalars(tmp_path / job_name(clip, seed) / "tb")["losses/policy_loss"]]
            assert curve == pytest.approx([v for _, v in read_scalars(root / job_name(clip, seed) / "tb")
                                           ["losses/policy_loss"]], rel=1e-5, abs=1e-7)


def test_sigterm_reaches_every_worker_and_every_member_checkpoints(tmp_path):
    """SIGTERM to the launcher's process is forwarded to its workers: each member checkpoints and the multirun exits
    with 143, as a solo run does."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.Popen([sys.executable, "-m", "experiments.train", "-m", "hydra/launcher=population",
                             "hydra.launcher.n_jobs=2", "seed=0,1,2,3", "env=bandit", "total_timesteps=10000000",
                             "eval.episodes=4", "checkpoint_every=1000000", f"hydra.sweep.dir={tmp_path}"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(tmp_path.glob("*/tb/events.*"))) < 4:
        time.sleep(0.2)
    time.sleep(2.0)  # the workers are training
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    folders = sorted(p for p in tmp_path.iterdir() if (p / ".hydra").is_dir())
    assert len(folders) == 4
    for folder in folders:
        state = load_checkpoint(folder)
        assert 0 < state["global_step"] < 10_000_000
    assert "resume=<folder>,<folder>" in out + err


def test_a_killed_worker_fails_only_its_own_jobs(tmp_path):
    """A worker killed from outside (as the OOM killer would) fails its own unreported jobs, each in one line; the
    other worker's population trains to its end."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.Popen([sys.executable, "-m", "experiments.train", "-m", "hydra/launcher=population",
                             "hydra.launcher.n_jobs=2", "seed=0,1,2,3", "env=bandit", "total_timesteps=60000",
                             "eval.episodes=4", f"hydra.sweep.dir={tmp_path}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def children(pid: int) -> list[int]:
        listing = Path(f"/proc/{pid}/task/{pid}/children")
        return [int(child) for child in listing.read_text().split()] if listing.exists() else []

    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and (len(workers) < 2 or len(list(tmp_path.glob("*/tb/events.*"))) < 4):
        # the launcher's one child trains the populations (its training host); the workers are its children
        workers = [worker for host in children(proc.pid) for worker in children(host)]
        time.sleep(0.1)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors and all("exited with code 137" in line for line in errors), errors
    finished = [p for p in tmp_path.iterdir() if (p / "checkpoint.pt").is_file()
                and load_checkpoint(p)["final_eval"] is not None]
    assert len(finished) == 2  # the surviving worker's population of two


def test_with_workers_the_launching_process_never_imports_torch(tmp_path):
    """With ``n_jobs`` > 1 the jobs are composed, checked and collected without PyTorch, while the training host the
    launcher forked imports it; the host trains them. Checked from the launching process itself at its exit, beside a
    solo run's process, which does import it."""
    script = ("import atexit, runpy, sys\n"
              "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules))\n"
              "sys.argv = ['experiments.train'] + sys.argv[1:]\n"
              "runpy.run_module('experiments.train', run_name='__main__', alter_sys=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}

    def launch(*args: str) -> str:
        out = subprocess.run([sys.executable, "-c", script, *args, *TINY], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    out = launch("-m", "hydra/launcher=population", "hydra.launcher.n_jobs=2", "seed=0,1,2,3",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert out.count("torch imported:") == 1 and "torch imported: False" in out
    trained = [p for p in (tmp_path / "sweep").iterdir() if (p / "checkpoint.pt").is_file()
               and load_checkpoint(p)["final_eval"] is not None]
    assert len(trained) == 4
    assert "torch imported: True" in launch(f"hydra.run.dir={tmp_path / 'solo'}")


def test_register_outside_a_collecting_launcher_is_refused():
    assert not population.is_collecting()
    with pytest.raises(RuntimeError):
        population.register(compose_cfg(["env=bandit"]), "run")


# ------------------------------------------------------------------------------------------- Optuna


@pytest.mark.slow
@pytest.mark.optuna
def test_optuna_hands_the_population_launcher_batches_of_n_jobs(tmp_path):
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        message = "hydra_plugins.hydra_optuna_sweeper is not installed: pip install -e '.[optuna]'"
        if os.environ.get("PPO_REQUIRE_EXTRAS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path / "multirun"
    proc = train(["-m", "search=clip_entropy_optuna", "hydra/launcher=population", "hydra.sweeper.n_trials=4",
                  "hydra.sweeper.n_jobs=2", *TINY, f"hydra.sweep.dir={root}"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Launching 2 jobs as populations") == 2
    assert proc.stdout.count("population 1/1: 2 members differing in agent.clip_ratio, agent.entropy_coef") == 2
    results = yaml.safe_load((root / "optimization_results.yaml").read_text())
    runs = [p for p in root.iterdir() if (p / ".hydra").is_dir()]
    assert len(runs) == 4 and all((p / "checkpoint.pt").is_file() for p in runs)
    nums = {yaml.safe_load((p / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["num"] for p in runs}
    assert nums == {0, 1, 2, 3}
    finals = [float(read_scalars(p / "tb")["eval/mean_return"][-1][1]) for p in runs]
    assert results["best_value"] == pytest.approx(max(finals), rel=1e-6)


def test_repeated_jobs_each_compose_their_own_config_also_without_the_sweepers_check(tmp_path):
    """The launcher keeps what the sweeper's check composed and hands each kept config to one job. A sweeper that
    launches without checking (Optuna's) and the same overrides twice, in one batch or in the next, must each
    compose a config of their own: a job's config has a read-only ``hydra`` node once it ran."""
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import JobStatus
    from hydra.types import HydraContext, RunMode

    from hydra_plugins.population_launcher.population_launcher import PopulationLauncher

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(f"x: 0\nhydra:\n  sweep:\n    dir: {tmp_path / 'out'}\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("config", overrides=["x=1,2"], run_mode=RunMode.MULTIRUN)
        launcher = PopulationLauncher()
        launcher.setup(hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks(cfg)),
                       task_function=lambda job_cfg: job_cfg.x * 10, config=cfg)
        batches = [[["x=1"], ["x=1"], ["x=2"]], [["x=1"]]]
        ran = [launcher.launch(batch, initial_job_idx=idx) for idx, batch in zip((0, 3), batches)]
    assert [[(r.status, r.return_value) for r in rets] for rets in ran] == \
        [[(JobStatus.COMPLETED, 10), (JobStatus.COMPLETED, 10), (JobStatus.COMPLETED, 20)],
         [(JobStatus.COMPLETED, 10)]]
    assert [r.hydra_cfg.hydra.job.num for rets in ran for r in rets] == [0, 1, 2, 3]


def test_members_continue_as_the_readme_says(sweep, tmp_path):
    """A member's checkpoint continues with ``resume=`` (from fresh episodes: its sub-envs were part of the
    population's vector env); several continue together, as one population, through the population launcher."""

    root, _ = sweep
    dirs = []
    for seed in SEEDS:
        dirs.append(tmp_path / f"member{seed}")
        shutil.copytree(root / job_name("0.1", seed), dirs[-1])
    refused = train([f"resume={dirs[0]}", "total_timesteps=512"], cwd=REPO)
    assert refused.returncode == 2
    assert [line for line in refused.stderr.splitlines() if line.startswith("error:")] == \
        [line for line in refused.stderr.splitlines() if line.strip()]
    assert "allow_inexact_resume=true" in refused.stderr
    proc = train(["-m", "hydra/launcher=population", f"resume={dirs[0]},{dirs[1]}", "total_timesteps=512",
                  "allow_inexact_resume=true", f"hydra.sweep.dir={tmp_path / 'continued'}"], cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "population 1/1: 2 members differing in seed" in proc.stdout, proc.stdout[-3000:]
    for d, seed in zip(dirs, SEEDS):
        state = load_checkpoint(d)
        assert state["global_step"] == 512 and state["run"]["config"]["seed"] == int(seed)
        steps = [step for step, _ in read_scalars(d / "tb")["losses/policy_loss"]]
        assert max(steps) == 512 and len(steps) == len(set(steps))  # continued, nothing logged twice


def test_a_resumed_member_whose_checkpoint_does_not_fit_fails_alone(sweep, tmp_path):
    """Two members resumed together, one checkpoint damaged (its weights no longer fit the network its config
    names): the population cannot be built, so each continues alone — the good one to its new budget, the damaged
    one refused in one line."""
    import torch

    root, _ = sweep
    dirs = [tmp_path / "good", tmp_path / "bad"]
    for d, seed in zip(dirs, SEEDS):
        shutil.copytree(root / job_name("0.1", seed), d)
    state = torch.load(dirs[1] / "checkpoint.pt", weights_only=False)
    state["agent"]["policy"]["logits"] = state["agent"]["policy"]["logits"][:2].clone()  # 2 arms, not the bandit's 3
    torch.save(state, dirs[1] / "checkpoint.pt")
    proc = train(["-m", "hydra/launcher=population", f"resume={dirs[0]},{dirs[1]}", "total_timesteps=512",
                  "allow_inexact_resume=true", f"hydra.sweep.dir={tmp_path / 'continued'}"], cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    refused = "resume: the checkpoint does not fit this env/network (size mismatch for logits"
    assert len(errors) == 2 and errors[0].startswith(f"error: {refused}"), proc.stderr[-3000:]
    assert errors[1].startswith(f"error: a job of the multirun failed: {refused}")  # the sweep's last line
    assert load_checkpoint(dirs[0])["global_step"] == 512
    assert load_checkpoint(dirs[1])["global_step"] == 256


def test_resumed_jobs_share_a_population_only_where_they_continue_from_fresh_episodes_anyway(
        sweep, tmp_path, monkeypatch, capsys):
    """Population members' checkpoints (no env state) resumed with ``allow_inexact_resume=true`` are grouped like
    new jobs, by their saved configs; a checkpoint that continues exactly (a solo run's) stays a solo run, as does
    one resumed without the opt-in (refused when it trains); one that cannot be read, or a run folder resumed a second
    time in the batch, fails alone, in one line."""
    root, _ = sweep
    code, _ = run_main(monkeypatch, capsys, *TINY, f"hydra.run.dir={tmp_path / 'solo'}")
    assert code == 0
    shutil.copytree(root / job_name("0.2", "0"), tmp_path / "member")  # another member's checkpoint
    inexact = "allow_inexact_resume=true"

    def resume(folder: Path) -> str:
        return f"resume='{folder}'"  # quoted: a job folder's name holds '=' and ','

    jobs = jobs_of([resume(root / job_name("0.1", "0")), inexact], [resume(root / job_name("0.2", "1")), inexact],
                   [resume(root / job_name("0.1", "1")), "total_timesteps=512", inexact],
                   [resume(tmp_path / "member")], [resume(tmp_path / "solo"), inexact],
                   [resume(tmp_path / "missing"), inexact], [resume(root / job_name("0.2", "0")), inexact],
                   [resume(root / job_name("0.1", "0")), inexact])
    outcomes: list = [None] * len(jobs)
    population.plan_resumed(jobs, outcomes)
    err = capsys.readouterr().err
    assert isinstance(outcomes[5], ConfigError) and isinstance(outcomes[7], ConfigError)
    assert err.count("error: resume") == 2 and err.count("another job of this multirun resumes the same run") == 1
    assert [population.continues_together(job) for job in jobs] == [True, True, True, False, False, False, True,
                                                                     False]
    assert group_jobs(jobs) == [[0, 1, 6], [2], [3], [4], [5], [7]]
    assert describe(1, 1, [jobs[0], jobs[1]]) == "population 1/1: 2 members differing in agent.clip_ratio, seed"


@pytest.mark.parametrize("searchpath", [False, True])
def test_jobs_compose_exactly_as_under_the_basic_launcher(tmp_path, searchpath):
    """The launcher initialises each job's config sources once per search path, builds each distinct defaults
    list and composes each distinct set of config files once (``_reuse_repositories``, ``_reuse_defaults_lists``,
    ``_reuse_compositions``): every job's recorded config, overrides and choices equal those of the same sweep
    under Hydra's basic launcher — also with a ``hydra.searchpath`` that brings a config group option of its
    own."""
    args = ["-m", "env=bandit,cartpole", "agent.clip_ratio=0.1,0.2", "total_timesteps=256", "eval.episodes=2",
            "agent.num_steps=16", "env.num_envs=2"]
    if searchpath:  # env=extra exists only on the added search path
        extra = tmp_path / "more_conf" / "env"
        extra.mkdir(parents=True)
        (extra / "extra.yaml").write_text((CONF / "env" / "bandit.yaml").read_text().replace("num_envs: 8",
                                                                                             "num_envs: 3"))
        args = ["-m", f"hydra.searchpath=[file://{extra.parent}]", "env=extra", "agent.clip_ratio=0.1,0.2",
                "seed=0,1", "total_timesteps=256", "eval.episodes=2", "agent.num_steps=16"]
    for launcher in ("population", "basic"):
        proc = train([*args, f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path / launcher}"], cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in (tmp_path / "basic").iterdir() if (p / ".hydra").is_dir())
    assert len(names) == 4
    if searchpath:
        for name in names:
            assert yaml.safe_load((tmp_path / "population" / name / ".hydra" / "config.yaml").read_text()
                                  )["env"]["num_envs"] == 3
    for name in names:
        ours, theirs = tmp_path / "population" / name / ".hydra", tmp_path / "basic" / name / ".hydra"
        for record in ("config.yaml", "overrides.yaml"):
            assert (ours / record).read_text() == (theirs / record).read_text(), (name, record)
        ours_h, theirs_h = (yaml.safe_load((d / "hydra.yaml").read_text())["hydra"] for d in (ours, theirs))
        assert ours_h["runtime"]["choices"] == {**theirs_h["runtime"]["choices"], "hydra/launcher": "population"}
        assert ours_h["job"]["override_dirname"] == theirs_h["job"]["override_dirname"]
        assert ours_h["overrides"]["task"] == theirs_h["overrides"]["task"]


def test_jobs_collected_in_worker_processes_are_those_collected_here(tmp_path):
    """With n_jobs=2 and enough jobs, the jobs after the first are collected in two forked processes: every job's
    folder, ``.hydra/`` records and trained result are those of the same sweep collected in this process
    (n_jobs=1), and the jobs are announced in order."""
    seeds = "seed=" + ",".join(str(s) for s in range(17))
    for n_jobs in (1, 2):
        proc = train(["-m", "hydra/launcher=population", f"hydra.launcher.n_jobs={n_jobs}", seeds, *TINY,
                      f"hydra.sweep.dir={tmp_path / str(n_jobs)}"], cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert ("collecting 16 more jobs in 2 processes" in proc.stdout) == (n_jobs == 2)
        announced = [line.split("#")[1].split(" :")[0] for line in proc.stdout.splitlines() if "\t#" in line]
        assert announced == [str(i) for i in range(17)]
    names = sorted(p.name for p in (tmp_path / "1").iterdir() if (p / ".hydra").is_dir())
    assert len(names) == 17 and names == sorted(p.name for p in (tmp_path / "2").iterdir() if (p / ".hydra").is_dir())
    for name in names:
        ours, theirs = tmp_path / "2" / name, tmp_path / "1" / name
        for record in ("config.yaml", "overrides.yaml"):
            assert (ours / ".hydra" / record).read_text() == (theirs / ".hydra" / record).read_text()
        ours_h, theirs_h = (yaml.safe_load((d / ".hydra" / "hydra.yaml").read_text())["hydra"] for d in (ours, theirs))
        assert ours_h["job"]["num"] == theirs_h["job"]["num"] and ours_h["job"]["id"] == theirs_h["job"]["id"]
        a, b = load_checkpoint(ours), load_checkpoint(theirs)
        assert a["global_step"] == b["global_step"] == 256
        assert a["final_eval"]["returns"].tolist() == pytest.approx(b["final_eval"]["returns"].tolist())


def test_with_a_callback_jobs_are_collected_in_this_process(monkeypatch, capsys, tmp_path):
    """A Hydra callback's on_job_start runs where a job is collected: with one configured, phase 1 stays in this
    process even with n_jobs=2, so the callback sees every job start and end."""
    JobEvents.events.clear()
    code, err = run_main(monkeypatch, capsys, "-m", "hydra/launcher=population", "hydra.launcher.n_jobs=2",
                         "seed=" + ",".join(str(s) for s in range(17)), *TINY, f"hydra.sweep.dir={tmp_path}",
                         "+hydra.callbacks.events._target_=test_population_launcher.JobEvents")
    assert code == 0, err
    assert [e for e in JobEvents.events if e[0] == "start"] == [("start", i) for i in range(17)]
    assert [e[:3] for e in JobEvents.events if e[0] == "end"] == [("end", i, JobStatus.COMPLETED) for i in range(17)]


def test_a_job_refused_in_a_collecting_process_fails_alone_in_one_line(tmp_path):
    """A job whose config is refused while it is collected in a worker process (clip_ratio=-1) fails alone with
    its one ``error:`` line, as in this process; the other jobs train."""
    root = tmp_path / "multirun"
    proc = train(["-m", "hydra/launcher=population", "hydra.launcher.n_jobs=2", "agent.clip_ratio=0.2,-1",
                  "seed=" + ",".join(str(s) for s in range(9)), *TINY, f"hydra.sweep.dir={root}",
                  "hydra.sweep.subdir=${hydra.job.num}"], cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "collecting 17 more jobs in 2 processes" in proc.stdout
    refused = "error: agent.clip_ratio=-1.0 is invalid: must be > 0 (typically 0.1–0.3)"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [refused] * 9 + ["error: a job of the multirun failed: agent.clip_ratio=-1.0 is invalid: must "
                                      "be > 0 (typically 0.1–0.3)"]
    trained = sorted(int(p.name) for p in root.iterdir() if (p / "checkpoint.pt").is_file())
    assert trained == list(range(9))  # the clip_ratio=0.2 jobs (the first override varies slowest)
