"""The score benchmark (``python -m experiments.benchmark --mode scores``), run for real: the benchmark and every
training run are fresh processes of the real entry points. Its table must say what the runs' own TensorBoard
files say (read back here with TensorBoard's reader, the statistics computed here); a stopped or damaged
benchmark must continue where it was without retraining what was finished."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import read_scalars

from experiments import benchmark
from experiments.benchmark.scores_anchors import ANCHORS, Anchor, judge, task_key
from experiments.benchmark.scores_tasks import compose_task, env_family

BENCH = [sys.executable, "-m", "experiments.benchmark", "--mode", "scores"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def bench(repo_root: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, "--out", str(out), *args], cwd=repo_root, capture_output=True, text=True,
                          timeout=300)


def independent(out: Path, word: str, seeds: list[int]) -> dict:
    """What the runs' event files say, read with TensorBoard's EventAccumulator; mean and std computed here."""
    finals, trains, steps = [], [], []
    for seed in seeds:
        scalars = read_scalars(out / word / f"seed={seed}" / "tb")
        final = scalars["hparams/final_eval_return"][-1][1]
        assert scalars["eval/mean_return"][-1][1] == final  # the final evaluation is also the last eval point
        finals.append(final)
        trains.append(scalars["hparams/final_train_return"][-1][1])
        steps.append(max(step for step, _ in scalars["charts/learning_rate"]))
    return {"finals": finals, "trains": trains, "steps": steps, "mean": float(np.mean(finals)),
            "std": float(np.std(finals)), "train_mean": float(np.mean(trains)), "train_std": float(np.std(trains))}


def check_row(row: dict, truth: dict, seeds: list[int]) -> None:
    assert row["complete"] and row["seeds"] == seeds and row["n_done"] == len(seeds)
    assert row["final_eval"]["values"] == truth["finals"]
    assert row["final_eval"]["mean"] == pytest.approx(truth["mean"], rel=1e-12, abs=1e-12)
    assert row["final_eval"]["std"] == pytest.approx(truth["std"], rel=1e-12, abs=1e-12)
    assert row["last100_train"]["values"] == truth["trains"]
    assert row["last100_train"]["mean"] == pytest.approx(truth["train_mean"], rel=1e-12, abs=1e-12)
    assert row["last100_train"]["std"] == pytest.approx(truth["train_std"], rel=1e-12, abs=1e-12)
    assert [r["steps"] for r in row["runs"]] == truth["steps"]
    assert [r["final_eval_return"] for r in row["runs"]] == truth["finals"]
    assert all(r["wall_seconds"] > 0 and not r["wall_estimated"] for r in row["runs"])
    assert row["wall_seconds"]["values"] == [r["wall_seconds"] for r in row["runs"]]
    status, anchor, _ = judge(row["final_eval"]["mean"], row["budget"], [Anchor(**{
        k: v for k, v in a.items() if k != "label"}) for a in row["anchors"]])
    assert row["status"] == status and row["compared_with"] == (anchor.label() if anchor else None)


def fingerprint(run: Path) -> dict:
    """Name → (mtime_ns, sha256) of a run's checkpoint and event files."""
    files = [run / "checkpoint.pt", *sorted((run / "tb").iterdir())]
    return {f.name: (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest()) for f in files}


def stop_once_training(repo_root: Path, out: Path, args: tuple, runs: list[Path]) -> str:
    """Start the benchmark, SIGTERM it once every run has written a checkpoint (all are training), and return its
    output after it exited 143."""
    proc = subprocess.Popen([*BENCH, "--out", str(out), *args], cwd=repo_root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not all((run / "checkpoint.pt").is_file() for run in runs):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr[-2000:]
    return stdout


def check_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width = matplotlib.image.imread(path).shape[:2]  # decodes: a whole, valid PNG
    assert width > 400 and height > 300


def test_scores_table_matches_the_event_files_and_a_damaged_benchmark_continues(repo_root, tmp_path):
    out = tmp_path / "scores"
    args = ("--envs", "cartpole,bandit", "--seeds", "2", "--steps", "2048")
    seeds = [1000, 1001]
    proc = bench(repo_root, out, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seeds 1000..1001 (fresh" in proc.stdout
    results = json.loads((out / "scores.json").read_text())
    rows = {row["task"]: row for row in results["tasks"]}
    assert list(rows) == ["cartpole", "bandit"] and results["meta"]["seeds"] == seeds
    for word, env_id in (("cartpole", "CartPole-v1"), ("bandit", "SoftmaxBandit-v0")):
        row = rows[word]
        assert row["env_id"] == env_id and row["budget"] == 2048 and row["eval_episodes"] == 100
        check_row(row, independent(out, word, seeds), seeds)
        check_png(out / word / "learning_curves.png")
        for seed in seeds:  # the real entry point ran with the benchmark's settings
            cfg = (out / word / f"seed={seed}" / ".hydra" / "config.yaml").read_text()
            assert f"seed: {seed}\n" in cfg and "torch_threads: 1\n" in cfg and "progress: false\n" in cfg
            assert "total_timesteps: 2048\n" in cfg and "  episodes: 100\n" in cfg
        assert f"{word} ({env_id})" in proc.stdout
    cartpole = rows["cartpole"]["anchors"]
    assert [(a["source"], a["value"], a["budget"], a["env"]) for a in cartpole] == \
        [("CleanRL ppo.py", 490, 500_000, "CartPole-v1")] and cartpole[0]["url"].startswith("https://")
    assert rows["bandit"]["anchors"] == [] and rows["bandit"]["status"] == "n/a"
    markdown = (out / "scores.md").read_text()
    assert "| cartpole (CartPole-v1) | 2,048 |" in markdown and "CleanRL ppo.py 490 @ 500k" in markdown

    # damage: one run's results are gone; the three finished ones must be skipped, untouched
    victim = out / "bandit" / "seed=1001"
    kept = {run: fingerprint(run) for run in (out / "cartpole" / "seed=1000", out / "cartpole" / "seed=1001",
                                              out / "bandit" / "seed=1000")}
    shutil.rmtree(victim)
    again = bench(repo_root, out, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("skip ") == 3 and "start  bandit seed=1001" in again.stdout
    assert "start  cartpole" not in again.stdout and "  resume " not in again.stdout
    assert {run: fingerprint(run) for run in kept} == kept
    rows = {row["task"]: row for row in json.loads((out / "scores.json").read_text())["tasks"]}
    for word in ("cartpole", "bandit"):
        check_row(rows[word], independent(out, word, seeds), seeds)


def test_a_stopped_benchmark_resumes_its_interrupted_runs(repo_root, tmp_path):
    out = tmp_path / "scores"
    # 80 iterations of 512 steps; a checkpoint every 4 iterations tells that both runs are training (and can stop
    # cleanly) long before their end, whatever the machine's speed
    args = ("--envs", "cartpole", "--seeds", "2", "--steps", "40960", "--override", "checkpoint_every=4")
    runs = [out / "cartpole" / f"seed={seed}" for seed in (1000, 1001)]
    stdout = stop_once_training(repo_root, out, args, runs)
    assert "stopped cartpole seed=1000" in stdout and "curve so far" in stdout
    first_events = {}
    for run in runs:  # each run checkpointed mid-way and has no final result
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        assert 0 < state["global_step"] < 40_960
        assert "hparams/final_eval_return" not in read_scalars(run / "tb")
        first_events[run] = {f.name: f.read_bytes() for f in (run / "tb").glob("events.*")}
    partial = json.loads((out / "scores.json").read_text())["tasks"][0]
    assert not partial["complete"] and partial["final_eval"] is None and partial["status"] == "incomplete"
    assert partial["status_note"].startswith("curve so far, ") and partial["status_note"].endswith(
        f"/{2 * 40_960:,} steps")

    again = bench(repo_root, out, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    for seed in (1000, 1001):
        assert f"resume cartpole seed={seed} from step " in again.stdout
    assert "(exact)" in again.stdout and "start  cartpole" not in again.stdout
    for run, events in first_events.items():  # continued, not restarted: the first attempt's events are kept
        assert {name: (run / "tb" / name).read_bytes() for name in events} == events
    row = json.loads((out / "scores.json").read_text())["tasks"][0]
    check_row(row, independent(out, "cartpole", [1000, 1001]), [1000, 1001])
    assert all(r["resumed"] and not r["resumed_inexactly"] and r["attempts"] == 2 for r in row["runs"])
    assert row["budget"] == 40_960 and all(r["steps"] == 40_960 for r in row["runs"])
    check_png(out / "cartpole" / "learning_curves.png")


def test_an_unknown_env_word_is_one_line(repo_root, tmp_path):
    proc = bench(repo_root, tmp_path / "scores", "--envs", "cartpole,no_such_env", "--seeds", "2")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: --envs: unknown env 'no_such_env'") and "cartpole" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "scores").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--envs", "cartpole", "--seeds", "0"], "--seeds"),
    (["--envs", "cartpole", "--seeds", "many"], "--seeds"),
    (["--envs", "cartpole", "--first-seed", "30"], "overlap the seeds 0–39"),
    (["--seeds", "2"], "needs --envs"),
    (["--envs", "cartpole", "--jobs", "0"], "--jobs"),
    (["--envs", "cartpole", "--steps", "100"], "--steps=100"),
    (["--envs", "cartpole", "--override", "agent.no_such_key=1"], "no_such_key"),
])
def test_mistakes_are_one_error_line(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        benchmark.main(["--mode", "scores", "--out", str(tmp_path / "scores"), *argv])
    captured = capsys.readouterr()
    assert exc.value.code == 2 and captured.out == ""
    assert captured.err.startswith("error: ") and len(captured.err.strip().splitlines()) == 1, captured.err
    assert needle in captured.err


def test_generic_trains_the_tasks_env_and_budget_with_the_env_gym_defaults(repo_root, tmp_path):
    from experiments.benchmark.common import compose_train_config

    out = tmp_path / "scores"
    proc = bench(repo_root, out, "--envs", "pendulum", "--seeds", "1", "--steps", "4096", "--generic")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "GENERIC defaults" in proc.stdout
    run = out / "pendulum" / "seed=1000"
    ran = (run / ".hydra" / "config.yaml").read_text()
    generic = compose_train_config(["env=gym", "env.id=Pendulum-v1", "total_timesteps=4096"])
    tuned = compose_train_config(["env=pendulum"])
    assert generic.agent.num_steps != tuned.agent.num_steps  # the two configs differ where it is checked
    assert f"  num_steps: {generic.agent.num_steps}\n" in ran and f"  ppo_epochs: {generic.agent.ppo_epochs}\n" in ran
    assert "  id: Pendulum-v1\n" in ran and "total_timesteps: 4096\n" in ran
    record = json.loads((run / "scores_run.json").read_text())
    assert record["config"] == "generic (env=gym)" and "env=gym" in record["attempts"][0]["command"]
    results = json.loads((out / "scores.json").read_text())
    assert results["meta"]["generic"] is True
    check_row(results["tasks"][0], independent(out, "pendulum", [1000]), [1000])
    tuned_run = bench(repo_root, out, "--envs", "pendulum", "--seeds", "1", "--steps", "4096")  # another run
    assert tuned_run.returncode == 2 and "config='generic (env=gym)'" in tuned_run.stderr


def test_a_generic_task_keeps_the_tasks_env_kwargs_and_budget():
    from experiments.benchmark.common import compose_train_config

    tuned = compose_task("ant", None, [], None)
    generic = compose_task("ant", None, [], None, generic=True)
    assert tuned.kwargs == {"include_cfrc_ext_in_observation": False} and generic.kwargs == tuned.kwargs
    assert generic.budget == tuned.budget and generic.anchors == tuned.anchors and generic.generic
    cfg = compose_train_config(list(generic.train_args))
    assert cfg.env.id == "Ant-v5" and dict(cfg.env.kwargs) == tuned.kwargs
    assert cfg.agent == compose_train_config(["env=gym", "env.id=Ant-v5"]).agent != compose_train_config(
        ["env=ant"]).agent


def test_population_is_a_scores_option(capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.parse_args(["--mode", "sweep", "--population"])
    assert exc.value.code == 2 and "--population is for --mode scores" in capsys.readouterr().err
    assert benchmark.parse_args(["--mode", "scores", "--population"]).population is True
    assert benchmark.parse_args(["--mode", "scores"]).population is False
    with pytest.raises(SystemExit) as exc:
        benchmark.parse_args(["--mode", "sweep", "--generic"])
    assert exc.value.code == 2 and "--generic is for --mode scores" in capsys.readouterr().err


def test_mode_all_does_not_include_scores():
    assert "scores" not in benchmark.MODES
    assert benchmark.parse_args(["--mode", "scores"]).seeds == 3
    assert benchmark.parse_args([]).seeds == 10 and benchmark.parse_args([]).eval_episodes == 100


def test_budget_and_evaluation_come_from_the_task():
    cartpole = compose_task("cartpole", None, [], None)  # the tuned config's own total_timesteps
    assert (cartpole.env_id, cartpole.budget, cartpole.family, cartpole.eval_episodes) == \
        ("CartPole-v1", 100_000, "classic_control", 100)
    assert [a.value for a in cartpole.anchors] == [490]
    short = compose_task("cartpole", 4096, [], 7)
    assert (short.budget, short.eval_episodes) == (4096, 7)
    assert env_family("HalfCheetah-v5") == "mujoco" and env_family("LunarLander-v3") == "box2d"


def test_task_keys_and_anchors():
    assert task_key("HalfCheetah-v5") == "HalfCheetah" and task_key("CartPole-v1") == "CartPole"
    assert task_key("LunarLander-v3", {"continuous": True}) == "LunarLanderContinuous"
    assert task_key("BipedalWalker-v3", {"hardcore": True}) == "BipedalWalkerHardcore"
    assert task_key("my_pkg.envs:Thing-v0") == "Thing"
    for key, anchors in ANCHORS.items():
        for a in anchors:
            assert a.url.startswith("https://") and a.budget > 0 and a.runs and a.env.startswith(key)
            assert a.low is None or a.low < a.value


def test_status_against_anchors():
    cleanrl = Anchor(490, 500_000, "CleanRL", "CartPole-v1", "3 seeds", "https://x")
    zoo = Anchor(-73.5, 1_000_000, "zoo", "Acrobot-v1", "1 run", "https://y")
    low = Anchor(-86, 500_000, "CleanRL", "Acrobot-v1", "3 seeds", "https://z")
    assert judge(-80, 500_000, [low, zoo])[:2] == ("PASS", low)  # the same budget decides
    assert judge(-90, 500_000, [low, zoo])[:2] == ("MISS", low)
    assert judge(-73.5, 1_000_000, [low, zoo])[:2] == ("PASS", zoo)
    assert judge(500, 100_000, [cleanrl])[:2] == ("PASS", cleanrl)  # fewer steps, as good: a pass
    assert judge(400, 100_000, [cleanrl])[:2] == ("n/a", cleanrl)  # fewer steps, worse: not comparable
    assert judge(500, 1_000_000, [cleanrl])[:2] == ("n/a", None)  # more steps than the anchor: not comparable
    assert judge(1.0, 1000, [])[:2] == ("n/a", None)


def test_population_trains_a_tasks_seeds_in_one_process_and_its_members_resume_together(repo_root, tmp_path):
    """Three seeds, --jobs 2: the task's one population gets both slots (2 worker processes: members 1000, 1001 in
    one, 1002 alone in the other). Stopped and rerun, the two that shared a population resume together (their
    checkpoints cannot hold the shared envs); 1002's checkpoint (a population of one) holds its envs and resumes
    exactly, alone."""
    out = tmp_path / "scores"
    args = ("--envs", "cartpole", "--seeds", "3", "--steps", "40960", "--override", "checkpoint_every=4",
            "--population")
    seeds = [1000, 1001, 1002]
    runs = [out / "cartpole" / f"seed={seed}" for seed in seeds]
    stdout = stop_once_training(repo_root, out, args, runs)
    assert "start  cartpole seeds 1000, 1001, 1002 as one population in 2 worker processes" in stdout
    assert "start  cartpole seed=" not in stdout  # not one process per seed
    records = [json.loads((run / "scores_run.json").read_text()) for run in runs]
    first = [r["attempts"][0] for r in records]
    assert [a["population"] for a in first] == [seeds] * 3 and first[0]["command"] == first[2]["command"]
    assert "hydra/launcher=population" in first[0]["command"] and "seed=1000,1001,1002" in first[0]["command"]
    assert "hydra.launcher.n_jobs=2" in first[0]["command"] and first[0]["workers"] == 2
    for run, seed in zip(runs, seeds):  # each member wrote its own run folder, as a solo run does
        assert f"seed: {seed}\n" in (run / ".hydra" / "config.yaml").read_text()
        assert 0 < torch.load(run / "checkpoint.pt", weights_only=True)["global_step"] < 40_960
        assert "population.log" in (run / "console.log").read_text()
    assert "interrupted at step" in (out / "cartpole" / "population.log").read_text()

    again = bench(repo_root, out, *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resume cartpole seeds 1000, 1001 from step " in again.stdout and "(INEXACT" in again.stdout
    assert "resume cartpole seed=1002 from step " in again.stdout and "(exact)" in again.stdout
    second = [json.loads((run / "scores_run.json").read_text())["attempts"][1] for run in runs]
    assert [a["kind"] for a in second] == ["resume"] * 3
    assert [a.get("population") for a in second] == [seeds[:2], seeds[:2], None]
    assert second[0]["command"] == second[1]["command"] and "hydra/launcher=population" in second[0]["command"]
    assert "population 1/1: 2 members differing in seed" in (out / "cartpole" / "population.log").read_text()
    results = json.loads((out / "scores.json").read_text())
    row = results["tasks"][0]
    check_row(row, independent(out, "cartpole", seeds), seeds)
    assert results["meta"]["population"] is True
    assert [r["population"] for r in row["runs"]] == [seeds] * 3 and row["wall_seconds"]["population"] == 3
    assert all(r["resumed"] and r["attempts"] == 2 for r in row["runs"])
    assert [r["resumed_inexactly"] for r in row["runs"]] == [True, True, False]
    assert all(r["steps"] == 40_960 for r in row["runs"])
    assert "3 seeds in one process" in (out / "scores.md").read_text()


def test_population_units_group_a_tasks_runs_and_leave_an_unreadable_checkpoint_alone(tmp_path):
    """With --population, a task's new runs form one unit, and so do its interrupted runs whose checkpoints (at one
    step) hold no env state; a checkpoint that can continue exactly, or one that cannot be read, is a unit of its
    own (its process then fails it alone, not the benchmark)."""
    from agents.checkpoint import save_checkpoint
    from experiments.benchmark.scores_runs import RunState, Scheduler

    task = compose_task("cartpole", 4096, [], 4)
    runs = [RunState(task, seed, tmp_path / f"seed={seed}", {"attempts": []}) for seed in range(1000, 1007)]
    for run in runs:
        run.path.mkdir()
    for run, (step, complete) in zip(runs[2:6], [(512, False), (512, False), (1024, False), (512, True)]):
        run.state = "interrupted"
        save_checkpoint({"global_step": step, "collector": {"env": {"complete": complete}}}, run.path / "checkpoint.pt")
    runs[6].state = "interrupted"
    (runs[6].path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    units = Scheduler(2, -1, [], population=True).units(runs)
    assert [[r.seed for r in unit] for unit in units] == [[1000, 1001], [1002, 1003], [1004], [1005], [1006]]
    assert Scheduler(2, -1, [], population=False).units(runs) == [[r] for r in runs]


def test_a_run_resumed_in_a_population_is_marked_as_sharing_a_process(tmp_path):
    """A run started alone and resumed as one of two members: its row counts the seeds it shared a process with
    (its wall includes that process's time); one never shared stays unmarked."""
    from experiments.benchmark.scores_runs import RunState
    from experiments.benchmark.scores_table import task_result

    task = compose_task("cartpole", 4096, [], 4)
    start = {"kind": "start", "from_step": 0, "exact": True, "started": 0.0, "seconds": 10.0, "returncode": 143}
    resume = {"kind": "resume", "from_step": 512, "exact": False, "started": 20.0, "seconds": 5.0, "returncode": 0,
              "population": [1000, 1001]}
    shared = RunState(task, 1000, tmp_path / "a", {"attempts": [dict(start), dict(resume)]}, state="done", final=1.0)
    alone = RunState(task, 1002, tmp_path / "b", {"attempts": [dict(start)]}, state="done", final=1.0)
    row = task_result(task, [shared, alone])
    assert [r["population"] for r in row["runs"]] == [[1000, 1001], None]
    assert [r["wall_seconds"] for r in row["runs"]] == [15.0, 10.0] and row["wall_seconds"]["population"] == 2
