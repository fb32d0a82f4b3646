"""The sweep report on a real (tiny) multirun, and the ready sweep config ``sweep=clip_entropy``.

The expected numbers are read back from the runs' event files by a separate, minimal reader (the TFRecord
framing parsed by hand + TensorBoard's Event protobuf), not through the report's EventMultiplexer."""

from __future__ import annotations

import csv
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import sweep_report

CLIPS = ("0.1", "0.3")
ENTS = ("0.0", "0.05")
SEEDS = ("0", "1")


def read_event_scalars(tb_dir: Path) -> dict[str, list[tuple[float, int, float]]]:
    """``tag → [(wall_time, step, value)]`` from every ``events.out.tfevents.*`` file in ``tb_dir``."""
    from tensorboard.compat.proto import event_pb2

    out: dict[str, list[tuple[float, int, float]]] = {}
    for path in sorted(tb_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            record = data[pos + 12:pos + 12 + length]  # skip the length and its CRC; the record's CRC follows
            pos += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":
                    out.setdefault(value.tag, []).append((event.wall_time, event.step, value.simple_value))
    for events in out.values():
        events.sort(key=lambda e: e[0])
    return out


@pytest.fixture(scope="module")
def multirun(tmp_path_factory) -> Path:
    """2 clip ratios × 2 entropy coefs × 2 seeds, two iterations of CartPole each: short, but the deterministic
    evaluation already differs between runs. Launched through ``sweep=clip_entropy`` with every list overridden:
    the command line must win and the subdirs must not name the sweep."""
    root = tmp_path_factory.mktemp("sweep") / "multirun"
    cmd = [sys.executable, "-m", "experiments.train", "-m", "sweep=clip_entropy",
           f"agent.clip_ratio={','.join(CLIPS)}", f"agent.entropy_coef={','.join(ENTS)}", f"seed={','.join(SEEDS)}",
           "total_timesteps=1024", "eval.episodes=4", f"hydra.sweep.dir={root}"]
    proc = subprocess.run(cmd, cwd=root.parent, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def expected_finals(root: Path) -> dict[tuple[str, str], list[float]]:
    """(clip_ratio, entropy_coef) → final eval/mean_return of each seed, from the event files."""
    from omegaconf import OmegaConf

    finals: dict[tuple[str, str], list[float]] = {}
    for cfg_path in root.glob("*/.hydra/config.yaml"):
        cfg = OmegaConf.load(cfg_path)
        events = read_event_scalars(cfg_path.parent.parent / "tb")["eval/mean_return"]
        finals.setdefault((str(cfg.agent.clip_ratio), str(cfg.agent.entropy_coef)), []).append(events[-1][2])
    return finals


def test_multirun_layout(multirun):
    names = sorted(p.name for p in multirun.iterdir() if p.is_dir())
    assert len(names) == len(CLIPS) * len(ENTS) * len(SEEDS)
    for name in names:
        parts = name.split(",")
        assert not any(p.startswith("sweep=") for p in parts), name
        assert {p.split("=")[0] for p in parts} >= {"agent.clip_ratio", "agent.entropy_coef", "seed"}
    assert "agent.clip_ratio=0.3,agent.entropy_coef=0.05,eval.episodes=4,seed=1,total_timesteps=1024" in names


def test_report_table_matches_event_files(multirun, tmp_path, capsys):
    out = tmp_path / "report"
    assert sweep_report.main([str(multirun), "--out", str(out)]) == 0
    printed = capsys.readouterr().out

    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:2] == ["agent.clip_ratio", "agent.entropy_coef"]
    assert "seed" not in rows[0]
    expected = expected_finals(multirun)
    assert len(expected) == 4
    # the data can tell configs apart (else a report that mixed up the groups would pass)
    assert len({float(np.mean(v)) for v in expected.values()}) == 4
    assert sorted((r["agent.clip_ratio"], r["agent.entropy_coef"]) for r in rows) == sorted(expected)
    for row in rows:
        finals = expected[(row["agent.clip_ratio"], row["agent.entropy_coef"])]
        assert int(row["n_seeds"]) == len(SEEDS) == len(finals)
        assert float(row["mean"]) == pytest.approx(np.mean(finals), rel=1e-9, abs=1e-12)
        assert float(row["std"]) == pytest.approx(np.std(finals), rel=1e-9, abs=1e-12)
        assert float(row["iqm"]) == pytest.approx(np.mean(finals), rel=1e-9, abs=1e-12)  # n=2: nothing trimmed
        assert row["seeds"] == "0;1"
        assert row["final_from"] == "eval/mean_return"
    assert any(float(r["std"]) > 0 for r in rows)  # seeds differ: a report that dropped one would be caught

    md = (out / "report.md").read_text()
    for row in rows:
        mean, std = float(row["mean"]), float(row["std"])
        line = f"| {row['agent.clip_ratio']} | {row['agent.entropy_coef']} | {mean:.2f} ± {std:.2f} |"
        assert line in md and line in printed
    for png in ("heatmap.png", "learning_curves.png"):
        image = __import__("matplotlib.image", fromlist=["imread"]).imread(out / png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert float(image[..., :3].std()) > 0.01  # not a blank canvas
        assert str(out / png) in printed
    assert str(out / "report.csv") in printed


def test_group_by_iqm_and_fallback_metric(multirun, tmp_path, capsys):
    """All 8 runs as one group: IQM drops 2 at each end; a missing --metric falls back to charts/episodic_return."""
    out = tmp_path / "by_env"
    assert sweep_report.main([str(multirun), "--out", str(out), "--group-by", "env.id"]) == 0
    with open(out / "report.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    finals = np.sort([v for vs in expected_finals(multirun).values() for v in vs])
    assert np.mean(finals[2:6]) != pytest.approx(np.mean(finals))  # the data can tell IQM from the mean
    assert int(row["n_seeds"]) == 8
    assert float(row["iqm"]) == pytest.approx(np.mean(finals[2:6]), rel=1e-9)
    assert float(row["mean"]) == pytest.approx(np.mean(finals), rel=1e-9)

    out2 = tmp_path / "fallback"
    assert sweep_report.main([str(multirun), "--out", str(out2), "--metric", "no/such_tag"]) == 0
    with open(out2 / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        assert row["final_from"] == "charts/episodic_return"
        train_finals = []
        for cfg_dir in multirun.glob(f"agent.clip_ratio={row['agent.clip_ratio']},"
                                     f"agent.entropy_coef={row['agent.entropy_coef']},*"):
            train_finals.append(read_event_scalars(cfg_dir / "tb")["charts/episodic_return"][-1][2])
        assert len(train_finals) == 2
        assert float(row["mean"]) == pytest.approx(np.mean(train_finals), rel=1e-9)
    assert "*" in (out2 / "report.md").read_text()
    capsys.readouterr()


def test_one_swept_key_has_no_heatmap(multirun, tmp_path, capsys):
    """Only clip_ratio=0.1 runs (entropy_coef swept, clip_ratio not): no heatmap, columns still both keys."""
    sub = tmp_path / "subset"
    for run in multirun.glob("agent.clip_ratio=0.1,*"):
        shutil.copytree(run, sub / run.name)
    out = tmp_path / "subset_report"
    assert sweep_report.main([str(sub), "--out", str(out)]) == 0
    assert not (out / "heatmap.png").exists()
    assert (out / "learning_curves.png").exists()
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["agent.clip_ratio"], r["agent.entropy_coef"]) for r in rows] == [("0.1", "0.0"), ("0.1", "0.05")]
    capsys.readouterr()


def test_points_that_are_not_a_grid_get_a_scatter_instead_of_a_heatmap(multirun, tmp_path, capsys):
    """A search's points (here: the grid without its (0.3, 0.05) cell, as an Optuna search leaves cells empty)."""
    sub = tmp_path / "search"
    for run in multirun.iterdir():
        if run.is_dir() and not run.name.startswith("agent.clip_ratio=0.3,agent.entropy_coef=0.05"):
            shutil.copytree(run, sub / run.name)
    runs = sweep_report.load_runs(sub, sweep_report.DEFAULT_METRIC)
    assert len(runs) == 6 and not sweep_report.is_full_grid(runs)
    assert sweep_report.is_full_grid(sweep_report.load_runs(multirun, sweep_report.DEFAULT_METRIC))
    out = tmp_path / "search_report"
    assert sweep_report.main([str(sub), "--out", str(out)]) == 0
    assert (out / "scatter.png").stat().st_size > 5000 and not (out / "heatmap.png").exists()
    assert "scatter.png" in (out / "report.md").read_text()
    capsys.readouterr()


def test_empty_dir_is_a_one_line_error(tmp_path):
    empty = tmp_path / "nothing here"
    empty.mkdir()
    (empty / "multirun.yaml").write_text("{}\n")
    proc = subprocess.run([sys.executable, "-m", "experiments.sweep_report", str(empty)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(empty) in lines[0]
    assert proc.stdout == ""
    assert not (empty / "report").exists()


def test_interquartile_mean_and_curve_alignment():
    assert sweep_report.interquartile_mean([100.0, 1.0, 2.0, 3.0, 4.0]) == pytest.approx(3.0)  # drops 1 and 100
    assert sweep_report.interquartile_mean(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert sweep_report.interquartile_mean([2.0, 7.0, 9.0]) == pytest.approx(6.0)  # n < 4: the mean
    grid = sweep_report.common_grid([np.array([0.0, 10.0, 20.0, 30.0]), np.array([5.0, 15.0, 25.0])])
    np.testing.assert_array_equal(grid, [5.0, 10.0, 15.0, 20.0, 25.0])  # only where both seeds have data
    # two values at step 10 are averaged before interpolating
    y = sweep_report.interpolate(np.array([0.0, 10.0, 10.0, 20.0]), np.array([0.0, 2.0, 4.0, 6.0]),
                                 np.array([5.0, 10.0, 15.0]))
    np.testing.assert_allclose(y, [1.5, 3.0, 4.5])


def test_sweep_clip_entropy_composes(repo_root):
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from experiments import config as _config  # noqa: F401  (registers the schema)

    with initialize_config_dir(config_dir=str(repo_root / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["sweep=clip_entropy"], return_hydra_config=True)
        plain = compose(config_name="config", return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params)
    assert params == {"agent.clip_ratio": "0.1,0.2,0.3", "agent.entropy_coef": "0.0,0.01", "seed": "0,1,2"}
    assert "sweep" in cfg.hydra.job.config.override_dirname.exclude_keys
    assert cfg.hydra.runtime.choices.sweep == "clip_entropy"
    assert not plain.hydra.sweeper.params
    # the job config itself is untouched: the sweep only sets the sweeper's lists
    for key in ("agent", "env", "eval", "seed", "total_timesteps"):
        assert cfg[key] == plain[key]

    # Hydra's basic sweeper expands it to the same 18 jobs as the explicit command line
    def jobs(overrides):
        parsed = OverridesParser.create().parse_overrides(overrides)
        (batch,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
        return sorted(sorted(job) for job in batch)

    from_config = jobs([f"{k}={v}" for k, v in params.items()])
    explicit = jobs(["agent.clip_ratio=0.1,0.2,0.3", "agent.entropy_coef=0.0,0.01", "seed=0,1,2"])
    assert len(from_config) == 18 and from_config == explicit
