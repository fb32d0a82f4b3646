"""The benchmark entry point (``python -m experiments.benchmark``): tiny runs of every report, checking the JSON's
structure and that its numbers agree with each other. No test asserts a speed: times only have to add up."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys

import numpy as np
import pytest
import torch

from agents.config import PPOConfig
from agents.losses import compute_value_loss
from experiments import benchmark
from experiments.benchmark import run_benchmark
from experiments.benchmark.cleanrl import CLEANRL_DOCUMENTED, CLEANRL_DOCUMENTED_LABEL, CLEANRL_OVERRIDES
from experiments.benchmark.common import (TUNED_SEEDS, _freshness, compose_train_config, describe, permutation_test,
                                          run_walls, solve_seeds, welch_t)
from experiments.benchmark.parity import PARITY_LOSS_TOL
from experiments.benchmark.sb3 import SB3_CLEANRL
from experiments.benchmark.throughput import TARGET_SPEEDUP, TIMES

TINY = ["--steps", "1024", "--seeds", "2", "--eval-episodes", "5", "--eval-every-steps", "512", "--wall-runs", "0",
        "--repeats", "2"]


def _finite(x) -> float:
    return math.inf if x == "inf" else float(x)


def check_spread(s: dict, values: list) -> None:
    """A spread is min / median / max of exactly the values it lists."""
    values = [_finite(v) for v in values]
    assert [_finite(v) for v in s["values"]] == values
    assert (_finite(s["min"]), _finite(s["median"]), _finite(s["max"])) == \
        (min(values), statistics.median(values), max(values))


def check_row(row: dict, requested: int, repeats: int) -> None:
    """One of our throughput rows: ``repeats`` runs of whole iterations whose parts add up, and every figure's
    spread taken over exactly those runs."""
    batch = row["config"]["batch_size"]
    assert row["repeats"] == len(row["runs"]) == repeats
    for run in row["runs"]:
        assert run["steps"] == row["steps"]
        assert 0 < run["steps"] <= requested and run["steps"] % batch == 0
        assert run["seconds"] > 0 and run["cpu_seconds"] > 0
        assert run["rollout_seconds"] > 0 and run["update_seconds"] > 0
        assert run["rollout_seconds"] + run["update_seconds"] <= run["seconds"]
        assert run["other_seconds"] == pytest.approx(run["seconds"] - run["rollout_seconds"] - run["update_seconds"])
        assert run["steps_per_second"] == pytest.approx(run["steps"] / run["seconds"], rel=1e-12)
    for key in TIMES:
        check_spread(row[key], [run[key] for run in row["runs"]])


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
        check_row(tp[key], 1024, repeats=2)
        assert tp[key]["seed"] == 1000
    assert tp["sb3_cleanrl"] is None and tp["wall_ours_cleanrl"] is None  # --no-sb3, --wall-runs 0

    # CleanRL's settings are built through Hydra, independent of our tuned file; ours are the composed default
    cleanrl = tp["ours_cleanrl"]["config"]
    assert (cleanrl["env.num_envs"], cleanrl["num_steps"], cleanrl["ppo_epochs"], cleanrl["num_minibatches"]) == \
        (4, 128, 4, 4)
    assert cleanrl["learning_rate"] == pytest.approx(2.5e-4) and cleanrl["anneal_lr"] is True
    default = compose_train_config([])
    assert tp["ours_tuned"]["config"] == describe(default)

    # no --cleanrl-script: CleanRL's column is the documented figure, and says so wherever it appears
    ref = tp["cleanrl"]
    assert ref["live"] is False and ref["label"] == CLEANRL_DOCUMENTED_LABEL
    assert ref["wall_seconds"]["median"] == CLEANRL_DOCUMENTED["wall_seconds"] == 17.0
    assert ref["wall_seconds"]["min"] is None and ref["wall_seconds"]["max"] is None  # one figure: no spread
    assert "DOCUMENTED" in printed and "not a live run" in printed and "spread unknown" in printed
    ratio = tp["ratios"]["steps_per_second_vs_cleanrl"]
    per_s = CLEANRL_DOCUMENTED["steps"] / CLEANRL_DOCUMENTED["wall_seconds"]
    ours = tp["ours_cleanrl"]["steps_per_second"]
    assert ratio["median"] == pytest.approx(ours["median"] / per_s)
    assert (ratio["min"], ratio["max"]) == (pytest.approx(ours["min"] / per_s), pytest.approx(ours["max"] / per_s))
    assert "documented" in ratio["reference"]
    assert "wall_vs_cleanrl" not in tp["ratios"]  # no wall runs
    target = {t["target"]: t for t in results["targets"]}["steps/s @ CleanRL settings vs CleanRL's (×)"]
    assert "documented" in target["note"]
    check_targets(results)

    # what was measured, how and when: the header and the JSON say it
    meta = results["meta"]
    assert meta["cpus"] == os.cpu_count() and meta["torch"] in printed and meta["machine"]["cpu_model"] in printed
    assert meta["time"][:10] in printed and "measured" in printed and "rerun" in printed
    assert "THROUGHPUT" in printed and "seed 1000" in printed and "2×" in printed and str(path) in printed
    assert any(line.lstrip().startswith(("PASS", "MISS")) for line in printed.splitlines())


def test_cleanrl_settings_weigh_the_value_loss_as_cleanrl_does():
    cfg = compose_train_config(list(CLEANRL_OVERRIDES))
    a = cfg.agent
    assert (cfg.env.num_envs, a.num_steps, a.num_minibatches, a.ppo_epochs) == (4, 128, 4, 4)
    assert (a.learning_rate, a.anneal_lr, a.clip_ratio, a.entropy_coef, a.max_grad_norm) == \
        (2.5e-4, True, 0.2, 0.01, 0.5)
    assert (a.gamma, a.gae_lambda) == (0.99, 0.95)
    # CleanRL: vf_coef 0.5 on ½·MSE; ours (and SB3's) value loss is the plain MSE, so 0.25 is the same weight
    assert a.vf_coef == 0.25 and SB3_CLEANRL["vf_coef"] == 0.25
    assert "agent.vf_coef=0.25" in CLEANRL_OVERRIDES
    gen = torch.Generator().manual_seed(0)
    values, returns, old = (torch.randn(64, generator=gen) for _ in range(3))
    for clip in (False, True):
        ours = a.vf_coef * compute_value_loss(values, returns, old, clip_value=clip, clip_ratio=a.clip_ratio)
        v_clipped = old + torch.clamp(values - old, -0.2, 0.2)  # cleanrl/ppo.py's v_loss, written out
        squared = torch.max((values - returns) ** 2, (v_clipped - returns) ** 2) if clip else (values - returns) ** 2
        cleanrl = 0.5 * (0.5 * squared.mean())
        assert ours.item() == pytest.approx(cleanrl.item(), rel=1e-6)
    # "~tuned" alone leaves the generic agent file, i.e. the schema's defaults: the tuned file is out
    assert compose_train_config(["~tuned"]).agent == PPOConfig()
    assert compose_train_config([]).agent != PPOConfig()  # (while the default config does apply it)


def test_default_seeds_are_fresh_ones():
    args = benchmark.parse_args([])
    seeds = solve_seeds(args)
    assert seeds == list(range(1000, 1010))
    assert list(TUNED_SEEDS) == list(range(40))  # what conf/tuned/cartpole.yaml was tuned on
    assert not set(seeds) & set(TUNED_SEEDS)
    assert solve_seeds(benchmark.parse_args(["--seeds", "3", "--first-seed", "7"])) == [7, 8, 9]
    assert _freshness(seeds).startswith("fresh")
    assert _freshness([38, 39, 40]).startswith("NOT fresh: 38..39")


def test_solve_report_counts_and_medians_add_up(tmp_path, capsys):
    path = tmp_path / "solve.json"
    # a low threshold so that seeds solve within a tiny budget (the real one is CartPole's 475)
    results = run_benchmark(["--mode", "solve", *TINY, "--solve-return", "15", "--no-sb3", "--json", str(path)])
    out, err = capsys.readouterr()
    assert "seeds 1000..1001 (fresh" in out and "NOT fresh" not in out + err
    assert json.loads(path.read_text())["solve"]["ours"]["seeds"] == 2
    sv = results["solve"]
    ours = sv["ours"]
    batch = ours["config"]["batch_size"]
    rows = ours["per_seed"]
    # fresh seeds by default: the tuned config never saw them
    assert [r["seed"] for r in rows] == sv["seeds"] == ours["seed_list"] == [1000, 1001] and ours["seeds"] == 2
    assert results["meta"]["seeds"] == [1000, 1001] and results["meta"]["seeds_fresh"] is True
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
    check_spread(ours["steps_to_solve"], steps)
    check_spread(ours["train_seconds_to_solve"], seconds)
    assert ours["total_eval_seconds"] == pytest.approx(sum(r["eval_seconds"] for r in rows))
    assert sv["sb3"] is None
    names = {t["target"]: t for t in results["targets"]}
    assert names["median time-to-solve vs SB3 rl-zoo (×)"]["status"] == "n/a"
    assert names["seeds solved"]["value"] == ours["solved"] and names["seeds solved"]["threshold"] == 2
    check_targets(json.loads(path.read_text()))

    # an unreachable threshold: nothing solves, the medians say so, and the JSON spells infinity as "inf"; seeds
    # the tuned config was tuned on are allowed, but flagged
    path = tmp_path / "unsolved.json"
    results = run_benchmark(["--mode", "solve", *TINY, "--solve-return", "1e9", "--no-sb3", "--first-seed", "39",
                             "--json", str(path)])
    out, err = capsys.readouterr()
    assert "note: seeds 39..40 are NOT fresh: 39 overlap" in err and "seeds 39..40 (NOT fresh" in out
    assert results["meta"]["seeds_fresh"] is False
    ours = results["solve"]["ours"]
    assert ours["solved"] == 0 and not any(r["solved"] or r["solved_step"] for r in ours["per_seed"])
    assert ours["median_steps"] == ours["median_train_seconds"] == math.inf
    assert json.loads(path.read_text())["solve"]["ours"]["median_steps"] == "inf"
    assert json.loads(path.read_text())["solve"]["ours"]["steps_to_solve"]["max"] == "inf"
    assert {t["target"]: t for t in results["targets"]}["seeds solved"]["status"] == "MISS"


def test_parity_report_compares_both_backends_at_fixed_steps(tmp_path):
    results = run_benchmark(["--mode", "parity", *TINY, "--steps", "2048", "--json", str(tmp_path / "p.json")])
    par = results["parity"]
    assert par["seeds"] == [1000, 1001]
    steps = [c["step"] for c in par["comparisons"]]
    assert steps == sorted(steps) and steps[-1] == 2048 and len(steps) == 4
    for c in par["comparisons"]:
        assert len(c["numpy"]) == len(c["torch"]) == 2
        assert 0 < c["p_value"] <= 1
        assert c["numpy_mean"] == pytest.approx(np.mean(c["numpy"]))
    # the first iteration trains both backends on the same data: their logged losses agree to float rounding
    assert par["first_iteration_loss_max_abs_diff"] <= PARITY_LOSS_TOL
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


# --- CleanRL's ppo.py run live: a stand-in script with its command line, run for real as a subprocess -----------

FAKE_CLEANRL = """
import argparse, json, os, sys, time
p = argparse.ArgumentParser()
p.add_argument("--total-timesteps", type=int, required=True)
for flag in ("--no-track", "--no-capture-video", "--no-cuda"):
    p.add_argument(flag, action="store_true")
a = p.parse_args()
with open({log!r}, "a") as f:
    f.write(json.dumps({{"name": {name!r}, "argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
os.makedirs("runs/CartPole-v1__ppo__1", exist_ok=True)  # as ppo.py writes its TensorBoard run
time.sleep({sleep})
print("global_step=128, episodic_return=[12.]")
print("SPS: 1000")
print("SPS: {sps}")
sys.exit({code})
"""


def fake_cleanrl(tmp_path, name="ppo.py", sleep=0.3, sps=1234, code=0):
    log = tmp_path / "calls.jsonl"
    script = tmp_path / name
    script.write_text(FAKE_CLEANRL.format(log=str(log), name=name, sleep=sleep, sps=sps, code=code))
    return script, log


def calls(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_cleanrl_script_runs_live_beside_ours(tmp_path, capsys):
    script, log = fake_cleanrl(tmp_path)
    path = tmp_path / "live.json"
    results = run_benchmark(["--mode", "throughput", "--steps", "512", "--repeats", "1", "--wall-runs", "1",
                             "--wall-steps", "512", "--no-sb3", "--cleanrl-script", str(script),
                             "--json", str(path)])
    printed = capsys.readouterr().out
    # really run, once per wall run, with CleanRL's own command line, in a temporary folder of its own
    (call,) = calls(log)
    assert call["argv"] == ["--total-timesteps", "512", "--no-track", "--no-capture-video", "--no-cuda"]
    assert not os.path.exists(call["cwd"]) and os.path.realpath(call["cwd"]) != os.path.realpath(os.getcwd())
    assert not os.path.exists("runs/CartPole-v1__ppo__1")
    tp = json.loads(path.read_text())["throughput"]
    ref = tp["cleanrl"]
    assert ref["live"] is True and ref["script"] == str(script.resolve()) and ref["runs"] == 1
    assert ref["command"].split()[1:] == [str(script.resolve()), *call["argv"]]
    assert ref["versions"]["python"] == platform.python_version()  # --cleanrl-python defaults to this one
    check_spread(ref["wall_seconds"], ref["wall_seconds"]["values"])
    assert len(ref["wall_seconds"]["values"]) == 1 and ref["wall_seconds"]["min"] >= 0.3  # timed: it slept 0.3 s
    assert ref["cpu_seconds"]["median"] > 0
    check_spread(ref["steps_per_second"], [1234.0])  # its last "SPS:" line
    ours = tp["wall_ours_cleanrl"]
    assert len(ours["wall_seconds"]["values"]) == 1 and "total_timesteps=512" in ours["command"]
    ratios = tp["ratios"]
    assert ratios["wall_vs_cleanrl"]["median"] == pytest.approx(ref["wall_seconds"]["median"]
                                                                / ours["wall_seconds"]["median"])
    assert ratios["steps_per_second_vs_cleanrl"]["median"] == pytest.approx(
        tp["ours_cleanrl"]["steps_per_second"]["median"] / 1234.0)
    assert all(r["reference"] == "CleanRL live" for k, r in ratios.items() if k.endswith("cleanrl"))
    names = {t["target"]: t for t in results["targets"]}
    wall_target = names["512 steps @ CleanRL settings, wall incl. start-up (s)"]
    assert wall_target["threshold"] == pytest.approx(ref["wall_seconds"]["median"] / TARGET_SPEEDUP)
    assert "CleanRL run live" in wall_target["note"]
    check_targets(results)
    assert "run live" in printed and "DOCUMENTED" not in printed and str(script.resolve()) in printed


def test_wall_runs_are_interleaved_and_summarized(tmp_path):
    a, log = fake_cleanrl(tmp_path, "a.py", sleep=0)
    b, _ = fake_cleanrl(tmp_path, "b.py", sleep=0.05)
    out = run_walls({"a": {"cmd": [sys.executable, str(a), "--total-timesteps", "1"], "cwd": str(tmp_path)},
                     "b": {"cmd": [sys.executable, str(b), "--total-timesteps", "1"], "cwd": str(tmp_path)}},
                    3, 1)
    assert [c["name"] for c in calls(log)] == ["a.py", "b.py"] * 3  # round by round, not a a a b b b
    for name in ("a", "b"):
        assert out[name]["runs"] == 3 and len(out[name]["stdout"]) == 3 and "SPS: 1234" in out[name]["stdout"][0]
        check_spread(out[name]["wall_seconds"], out[name]["wall_seconds"]["values"])
        assert len(out[name]["wall_seconds"]["values"]) == 3
    assert out["b"]["wall_seconds"]["min"] >= 0.05
    assert {c["cwd"] for c in calls(log)} == {str(tmp_path)}


def test_cleanrl_mistakes_are_one_line_errors(tmp_path, capsys):
    def refused(argv, code=2) -> str:
        with pytest.raises(SystemExit) as exc:
            run_benchmark(["--mode", "throughput", "--no-sb3", "--json", str(tmp_path / "x.json"), *argv])
        err = capsys.readouterr().err
        assert exc.value.code == code and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        return err

    assert "--cleanrl-script" in refused(["--cleanrl-script", str(tmp_path / "missing" / "ppo.py")])
    script, _ = fake_cleanrl(tmp_path)
    assert "--cleanrl-python" in refused(["--cleanrl-script", str(script), "--cleanrl-python",
                                          str(tmp_path / "no-such-python")])
    assert "--wall-runs" in refused(["--cleanrl-script", str(script), "--wall-runs", "0"])
    # a script that fails: its last error line, exit 1, before anything of ours is measured
    broken, log = fake_cleanrl(tmp_path, "broken.py", sleep=0, code=3)
    broken.write_text(broken.read_text().replace("sys.exit(3)",
                                                 "sys.exit(\"ModuleNotFoundError: No module named 'tyro'\")"))
    err = refused(["--cleanrl-script", str(broken), "--steps", "512", "--wall-runs", "1"], code=1)
    assert "failed (exit 1)" in err and "No module named 'tyro'" in err
    assert len(calls(log)) == 1 and not (tmp_path / "x.json").exists()


# --- subprocess measurements and the live Stable-Baselines3 baseline ------------------------------------------

@pytest.mark.slow
def test_memory_and_start_up_wall_run_real_subprocesses(tmp_path):
    results = run_benchmark(["--mode", "memory", "--steps", "1024", "--repeats", "2",
                             "--json", str(tmp_path / "m.json")])
    mem = results["memory"]
    assert mem["steps"] == 1024 and "experiments.train" in mem["command"] and "seed=1000" in mem["command"]
    assert mem["runs"] == 2 and len(mem["peak_rss_mb"]["values"]) == 2
    check_spread(mem["peak_rss_mb"], mem["peak_rss_mb"]["values"])
    # torch alone takes more than 50 MB; ru_maxrss is KiB on Linux
    assert 50 < mem["peak_rss_mb"]["min"] <= mem["peak_rss_mb"]["max"] < 10_000
    assert {t["target"]: t for t in results["targets"]}["peak RSS of a training run (MB)"]["value"] == \
        mem["peak_rss_mb"]["max"]
    check_targets(results)

    results = run_benchmark(["--mode", "throughput", "--steps", "1024", "--wall-runs", "2", "--repeats", "1",
                             "--no-sb3", "--json", str(tmp_path / "t.json")])
    tp = results["throughput"]
    wall = tp["wall_ours_cleanrl"]
    assert len(wall["wall_seconds"]["values"]) == len(wall["cpu_seconds"]["values"]) == 2
    check_spread(wall["wall_seconds"], wall["wall_seconds"]["values"])
    assert "~tuned" in wall["command"] and "total_timesteps=50000" in wall["command"]
    assert "agent.vf_coef=0.25" in wall["command"]
    assert all(c > 0 for c in wall["cpu_seconds"]["values"])
    ratio = tp["ratios"]["wall_vs_cleanrl"]  # the documented figure is for these 50k steps
    assert ratio["median"] == pytest.approx(CLEANRL_DOCUMENTED["wall_seconds"] / wall["wall_seconds"]["median"])
    assert ratio["min"] == pytest.approx(CLEANRL_DOCUMENTED["wall_seconds"] / wall["wall_seconds"]["max"])
    target = {t["target"]: t for t in results["targets"]}["50,000 steps @ CleanRL settings, wall incl. start-up (s)"]
    assert target["threshold"] == pytest.approx(17.0 / TARGET_SPEEDUP) and "DOCUMENTED" in target["note"]
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
    assert sb3["config"]["n_envs"] == 4 and sb3["config"]["vf_coef"] == 0.25 and sb3["steps"] >= 1024
    assert sb3["repeats"] == len(sb3["runs"]) == 2
    for run in sb3["runs"]:
        assert run["rollout_seconds"] + run["update_seconds"] == pytest.approx(run["seconds"])
    for key in TIMES:
        check_spread(sb3[key], [run[key] for run in sb3["runs"]])
    assert tp["ratios"]["steps_per_second_vs_sb3"]["median"] == pytest.approx(
        tp["ours_cleanrl"]["steps_per_second"]["median"] / sb3["steps_per_second"]["median"])

    results = run_benchmark(["--mode", "solve", *TINY, "--steps", "2048", "--solve-return", "15",
                             "--json", str(tmp_path / "s.json")])
    sv = results["solve"]
    theirs = sv["sb3"]
    assert theirs["seeds"] == 2 and theirs["solved"] <= 2 and theirs["seed_list"] == [1000, 1001]
    assert theirs["per_seed"][0]["eval_interval_steps"] == 512  # 8 envs × 32 steps × 2 rollouts
    for r in theirs["per_seed"]:
        assert r["train_seconds"] + r["eval_seconds"] == pytest.approx(r["wall_seconds"])
    if math.isfinite(theirs["median_train_seconds"]) and theirs["median_train_seconds"] > 0:
        assert sv["median_seconds_ratio"] == pytest.approx(sv["ours"]["median_train_seconds"]
                                                           / theirs["median_train_seconds"])
    check_targets(results)


def test_sweep_benchmark_reads_the_population_timing_line_and_judges_its_targets(tmp_path):
    """``--mode sweep``: the population's own timing line is what the phase split reads; the targets compare the
    measured figures with the benchmark's ``TARGET_*`` thresholds."""
    from experiments.benchmark.sweep import phases, sweep_targets
    from experiments.population import pool_line, timing_line

    output = "\n".join(["[x][experiments.population][INFO] - " + timing_line(24, wall, s)
                        for wall, s in ((30.0, {"rollout": 4.0, "update": 20.0, "evaluation": 2.0}),
                                        (6.0, {"rollout": 1.0, "update": 2.5, "evaluation": 0.5}))])
    split = phases("population, one process", {"output": output, "wall_seconds": 50.0}, tmp_path)
    assert split == {"rollout": 5.0, "update": 22.5, "evaluation": 2.5, "start-up and the rest": 50.0 - 36.0,
                     "populations": 2, "workers": 1}
    # two workers: the pool's own line gives the training wall; the phases are per worker, as joblib's
    pooled = output + "\n[x][experiments.population][INFO] - " + pool_line(31.5, 2)
    split = phases("population", {"output": pooled, "wall_seconds": 40.0}, tmp_path)
    assert split == {"rollout": 2.5, "update": 11.25, "evaluation": 1.25, "start-up and the rest": 40.0 - 31.5,
                     "populations": 2, "workers": 2}
    results = {"methods": {"population": {"wall_seconds": {"median": 30.0}, "peak_rss_mb": {"median": 900.0}}},
               "speedup": {"median": 4.9}, "sb3_zoo_run": {"wall_seconds": 40.0}}
    assert [t["ok"] for t in sweep_targets(results)] == [False, True, True]


def test_scale_benchmark_trains_each_population_size_for_real(tmp_path, capsys):
    """``--mode scale`` on the CPU: one real population multirun per size, every member's final evaluation counted
    (their mean as each member's train.log reports it), the phases read from the population's timing line, and
    the launcher it ran (one population per core on a CPU) in the recorded command. A GPU device this machine does
    not have is refused before any work."""
    from experiments.benchmark.scale import device_parity, launcher, member_finals

    out = tmp_path / "scale.json"
    results = run_benchmark(["--mode", "scale", "--members", "2,3", "--devices", "cpu", "--steps", "512",
                             "--eval-episodes", "2", "--json", str(out)])
    assert [(r["members"], r["device"]) for r in results["runs"]] == [(2, "cpu"), (3, "cpu")]
    assert results["parity"] == [] and results["eval_episodes"] == 2
    for row in results["runs"]:
        assert f"hydra.launcher.n_jobs={os.cpu_count()}" in row["command"] and "device=cpu" in row["command"]
        assert f"hydra.launcher.max_members={row['members']}" in row["command"] and row["workers"] == os.cpu_count()
        assert row["phases"]["populations"] >= 1 and row["phases"]["rollout"] > 0 and row["gpu_peak_mb"] is None
        assert 0 < row["final_eval_mean"] <= 500 and 0 <= row["solved"] <= row["members"]
        assert row["env_steps_per_second"] == pytest.approx(row["members"] * 512 / row["wall_seconds"])
    saved = json.loads(out.read_text())
    assert [r["final_eval_mean"] for r in saved["runs"]] == [r["final_eval_mean"] for r in results["runs"]]
    printed = capsys.readouterr().out
    assert "P=2" in printed and "P=3" in printed
    # a GPU run: one population by default, --gpu-workers N populations sharing the GPU
    assert launcher("cuda", 16, 64)[:2] == ["hydra/launcher=population", "hydra.launcher.n_jobs=1"]
    assert launcher("cuda", 16, 64, 4)[1] == "hydra.launcher.n_jobs=4" and launcher("cpu", 16, 64, 4)[1].endswith("=16")
    # the log parser reads what a run writes
    run = tmp_path / "job"
    run.mkdir()
    (run / "train.log").write_text("[x][experiments.run][INFO] - eval: mean_return=123.50 std=1.00 episodes=2 "
                                   "steps=512\n")
    assert member_finals(tmp_path) == [123.5]
    # the device parity check, pointed at the CPU itself: the same run twice, so nothing apart
    same = device_parity("cpu", 1000, iterations=3)
    assert same["first_iteration_max_rel_diff"] == 0.0 and same["first_iteration_apart"] is None
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exc:
            run_benchmark(["--mode", "scale", "--devices", "cpu,cuda"])
        assert exc.value.code == 2 and "device='cuda' is not available" in capsys.readouterr().err
