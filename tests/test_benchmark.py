"""The benchmark entry point (``python -m experiments.benchmark``): tiny runs of every report, checking the JSON's
structure and that its numbers agree with each other. No test asserts a speed: times only have to add up."""

from __future__ import annotations

import json
import math
import os
import statistics

import numpy as np
import pytest

from agents.config import PPOConfig
from experiments import benchmark
from experiments.benchmark import CLEANRL_REFERENCE, compose_train_config, permutation_test, run_benchmark, welch_t

TINY = ["--steps", "1024", "--seeds", "2", "--eval-episodes", "5", "--eval-every-steps", "512", "--wall-runs", "0"]


def _finite(x) -> float:
    return math.inf if x == "inf" else float(x)


def check_run(run: dict, requested: int) -> None:
    """One of our throughput rows: whole iterations, parts that add up, steps/s = steps / seconds."""
    batch = run["config"]["batch_size"]
    assert 0 < run["steps"] <= requested and run["steps"] % batch == 0
    assert run["seconds"] > 0 and run["cpu_seconds"] > 0
    assert run["rollout_seconds"] > 0 and run["update_seconds"] > 0
    assert run["rollout_seconds"] + run["update_seconds"] <= run["seconds"]
    assert run["other_seconds"] == pytest.approx(run["seconds"] - run["rollout_seconds"] - run["update_seconds"])
    assert run["steps_per_second"] == pytest.approx(run["steps"] / run["seconds"], rel=1e-12)


def check_targets(results: dict) -> None:
    """Every status follows from its value, comparison and threshold."""
    assert results["targets"], "no target was evaluated"
    for row in results["targets"]:
        value = row["value"]
        if row["status"] == "n/a":
            assert value is None or (isinstance(value, float) and math.isnan(value)), row
            continue
        value = _finite(value)
        ok = {"<=": value <= row["threshold"], "<": value < row["threshold"],
              ">=": value >= row["threshold"]}[row["compare"]]
        assert row["status"] == ("PASS" if ok else "MISS"), row


def test_throughput_entry_point_writes_consistent_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert benchmark.main(["--mode", "throughput", *TINY, "--no-sb3", "--json", str(path)]) is None
    printed = capsys.readouterr().out
    results = json.loads(path.read_text())
    assert set(results) == {"meta", "throughput", "targets"}
    tp = results["throughput"]
    for key in ("ours_cleanrl", "ours_tuned"):
        check_run(tp[key], 1024)
    assert tp["sb3_cleanrl"] is None and tp["wall_ours_cleanrl"] is None  # --no-sb3, --wall-runs 0

    # CleanRL's settings are built through Hydra, independent of our tuned file; ours are the composed default
    cleanrl = tp["ours_cleanrl"]["config"]
    assert (cleanrl["env.num_envs"], cleanrl["num_steps"], cleanrl["ppo_epochs"], cleanrl["num_minibatches"]) == \
        (4, 128, 4, 4)
    assert cleanrl["learning_rate"] == pytest.approx(2.5e-4) and cleanrl["anneal_lr"] is True
    default = compose_train_config([])
    assert tp["ours_tuned"]["config"] == benchmark.describe(default)

    assert tp["ratios"]["steps_per_second_vs_cleanrl"] == pytest.approx(
        tp["ours_cleanrl"]["steps_per_second"] / CLEANRL_REFERENCE["steps_per_second"])
    check_targets(results)
    assert "THROUGHPUT" in printed and "CleanRL ppo.py" in printed and str(path) in printed
    assert any(line.lstrip().startswith(("PASS", "MISS")) for line in printed.splitlines())


def test_cleanrl_overrides_drop_the_tuned_file_and_set_every_value():
    cfg = compose_train_config(list(benchmark.CLEANRL_OVERRIDES))
    a = cfg.agent
    assert (cfg.env.num_envs, a.num_steps, a.num_minibatches, a.ppo_epochs) == (4, 128, 4, 4)
    assert (a.learning_rate, a.anneal_lr, a.clip_ratio, a.entropy_coef, a.vf_coef, a.max_grad_norm) == \
        (2.5e-4, True, 0.2, 0.01, 0.5, 0.5)
    assert (a.gamma, a.gae_lambda) == (0.99, 0.95)
    # "~tuned" alone leaves the generic agent file, i.e. the schema's defaults: the tuned file is out
    assert compose_train_config(["~tuned"]).agent == PPOConfig()
    assert compose_train_config([]).agent != PPOConfig()  # (while the default config does apply it)


def test_solve_report_counts_and_medians_add_up(tmp_path):
    path = tmp_path / "solve.json"
    # a low threshold so that seeds solve within a tiny budget (the real one is CartPole's 475)
    results = run_benchmark(["--mode", "solve", *TINY, "--solve-return", "15", "--no-sb3", "--json", str(path)])
    assert json.loads(path.read_text())["solve"]["ours"]["seeds"] == 2
    sv = results["solve"]
    ours = sv["ours"]
    batch = ours["config"]["batch_size"]
    rows = ours["per_seed"]
    assert [r["seed"] for r in rows] == [0, 1] and ours["seeds"] == len(rows)
    assert ours["solved"] == sum(r["solved"] for r in rows) <= ours["seeds"]
    for r in rows:
        assert r["train_seconds"] + r["eval_seconds"] == pytest.approx(r["wall_seconds"])
        assert r["train_seconds"] > 0 and r["eval_seconds"] > 0 and r["evaluations"] >= 1
        assert r["eval_interval_steps"] % batch == 0 and r["eval_interval_steps"] >= 512
        if r["solved"]:
            assert r["solved_step"] <= ours["budget_steps"] and r["solved_step"] % batch == 0
            assert r["best_eval_return"] >= 15
    steps = [r["solved_step"] if r["solved"] else math.inf for r in rows]
    seconds = [r["train_seconds"] if r["solved"] else math.inf for r in rows]
    assert ours["median_steps"] == statistics.median(steps)
    assert ours["median_train_seconds"] == statistics.median(seconds)
    assert ours["total_eval_seconds"] == pytest.approx(sum(r["eval_seconds"] for r in rows))
    assert sv["sb3"] is None
    names = {t["target"]: t for t in results["targets"]}
    assert names["median time-to-solve vs SB3 rl-zoo (×)"]["status"] == "n/a"
    assert names["seeds solved"]["value"] == ours["solved"] and names["seeds solved"]["threshold"] == 2
    check_targets(json.loads(path.read_text()))

    # an unreachable threshold: nothing solves, the medians say so, and the JSON spells infinity as "inf"
    path = tmp_path / "unsolved.json"
    results = run_benchmark(["--mode", "solve", *TINY, "--solve-return", "1e9", "--no-sb3", "--json", str(path)])
    ours = results["solve"]["ours"]
    assert ours["solved"] == 0 and not any(r["solved"] or r["solved_step"] for r in ours["per_seed"])
    assert ours["median_steps"] == ours["median_train_seconds"] == math.inf
    assert json.loads(path.read_text())["solve"]["ours"]["median_steps"] == "inf"
    assert {t["target"]: t for t in results["targets"]}["seeds solved"]["status"] == "MISS"


def test_parity_report_compares_both_backends_at_fixed_steps(tmp_path):
    results = run_benchmark(["--mode", "parity", *TINY, "--steps", "2048", "--json", str(tmp_path / "p.json")])
    par = results["parity"]
    steps = [c["step"] for c in par["comparisons"]]
    assert steps == sorted(steps) and steps[-1] == 2048 and len(steps) == 4
    for c in par["comparisons"]:
        assert len(c["numpy"]) == len(c["torch"]) == 2
        assert 0 < c["p_value"] <= 1
        assert c["numpy_mean"] == pytest.approx(np.mean(c["numpy"]))
    # the first iteration trains both backends on the same data: their logged losses agree to float rounding
    assert par["first_iteration_loss_max_abs_diff"] <= benchmark.PARITY_LOSS_TOL
    check_targets(results)


def test_permutation_test_matches_the_exact_enumeration():
    # a = [1, 2, 3] vs b = [4, 5, 6]: of the 20 relabellings, 2 are as extreme as observed → p = 0.1
    p = permutation_test([1, 2, 3], [4, 5, 6], resamples=40_000)
    assert p == pytest.approx(0.1, abs=0.01)
    assert permutation_test([500.0] * 5, [500.0] * 5) == 1.0
    assert permutation_test(np.zeros(10), np.ones(10)) < 0.001
    a, b = [3.0, 1.0, 4.0, 1.0, 5.0], [9.0, 2.0, 6.0, 5.0, 3.0]
    assert permutation_test(a, b) == pytest.approx(permutation_test(b, a), abs=0.02)  # Monte-Carlo noise only


def test_welch_t_sign_and_degenerate_case():
    assert welch_t([2.0, 3.0, 4.0], [0.0, 1.0, 2.0]) == pytest.approx(2.0 / math.sqrt(1 / 3 + 1 / 3))
    assert welch_t([0.0, 1.0, 2.0], [2.0, 3.0, 4.0]) < 0
    assert math.isnan(welch_t([1.0, 1.0], [1.0, 1.0]))


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        run_benchmark(["--steps", "0"])
    assert exc.value.code == 2 and "--steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run_benchmark(["--mode", "solve", "--override", "agent.num_minibatches=3", "--no-sb3"])
    assert exc.value.code == 2 and "num_minibatches" in capsys.readouterr().err


# --- subprocess measurements and the live Stable-Baselines3 baseline ------------------------------------------

@pytest.mark.slow
def test_memory_and_start_up_wall_run_real_subprocesses(tmp_path):
    results = run_benchmark(["--mode", "memory", "--steps", "1024", "--json", str(tmp_path / "m.json")])
    mem = results["memory"]
    assert mem["steps"] == 1024 and "experiments.train" in mem["command"]
    assert 50 < mem["peak_rss_mb"] < 10_000  # torch alone takes more than 50 MB; ru_maxrss is KiB on Linux
    check_targets(results)

    results = run_benchmark(["--mode", "throughput", "--steps", "1024", "--wall-runs", "2", "--no-sb3",
                             "--json", str(tmp_path / "t.json")])
    wall = results["throughput"]["wall_ours_cleanrl"]
    assert len(wall["runs_seconds"]) == len(wall["cpu_seconds"]) == 2
    assert wall["median_seconds"] == statistics.median(wall["runs_seconds"])
    assert "~tuned" in wall["command"] and "total_timesteps=50000" in wall["command"]
    assert all(c > 0 for c in wall["cpu_seconds"])
    ratio = results["throughput"]["ratios"]["wall_50k_vs_cleanrl"]
    assert ratio == pytest.approx(CLEANRL_REFERENCE["wall_seconds"] / wall["median_seconds"])
    check_targets(results)


@pytest.mark.slow
@pytest.mark.bench
def test_sb3_runs_side_by_side_when_installed(tmp_path):
    if os.environ.get("PPO_REQUIRE_EXTRAS") == "1":  # CI's .venv-bench: a missing SB3 is a failure
        import stable_baselines3  # noqa: F401
    else:
        pytest.importorskip("stable_baselines3")
    results = run_benchmark(["--mode", "throughput", *TINY, "--json", str(tmp_path / "t.json")])
    tp = results["throughput"]
    sb3 = tp["sb3_cleanrl"]
    assert sb3["config"]["n_envs"] == 4 and sb3["steps"] >= 1024
    assert sb3["rollout_seconds"] + sb3["update_seconds"] == pytest.approx(sb3["seconds"])
    assert tp["ratios"]["steps_per_second_vs_sb3"] == pytest.approx(
        tp["ours_cleanrl"]["steps_per_second"] / sb3["steps_per_second"])

    results = run_benchmark(["--mode", "solve", *TINY, "--steps", "2048", "--solve-return", "15",
                             "--json", str(tmp_path / "s.json")])
    sv = results["solve"]
    theirs = sv["sb3"]
    assert theirs["seeds"] == 2 and theirs["solved"] <= 2
    assert theirs["per_seed"][0]["eval_interval_steps"] == 512  # 8 envs × 32 steps × 2 rollouts
    for r in theirs["per_seed"]:
        assert r["train_seconds"] + r["eval_seconds"] == pytest.approx(r["wall_seconds"])
    if math.isfinite(theirs["median_train_seconds"]) and theirs["median_train_seconds"] > 0:
        assert sv["median_seconds_ratio"] == pytest.approx(sv["ours"]["median_train_seconds"]
                                                           / theirs["median_train_seconds"])
    check_targets(results)
