"""experiments.clip_exercises: the PPO clip exercises computed with the package, checked number by number against
their hand-worked solutions."""

import math
import re
import subprocess
import sys

import pytest
import torch
from matplotlib.image import imread

from agents import compute_ppo_loss
from experiments import clip_exercises as ce

# Exercise 1 (ε = 0.2), its hand-worked solution tables as literals: r, r·A, clip(r), clip·A, L^CLIP, clipped?
REFERENCE_TABLE = {
    +1.0: [(0.5, 0.5, 0.8, 0.8, 0.5, "no"), (0.8, 0.8, 0.8, 0.8, 0.8, "no"), (1.0, 1.0, 1.0, 1.0, 1.0, "no"),
           (1.1, 1.1, 1.1, 1.1, 1.1, "no"), (1.2, 1.2, 1.2, 1.2, 1.2, "no"), (1.3, 1.3, 1.2, 1.2, 1.2, "yes"),
           (1.5, 1.5, 1.2, 1.2, 1.2, "yes"), (2.0, 2.0, 1.2, 1.2, 1.2, "yes")],
    -1.0: [(0.5, -0.5, 0.8, -0.8, -0.8, "yes"), (0.7, -0.7, 0.8, -0.8, -0.8, "yes"),
           (0.8, -0.8, 0.8, -0.8, -0.8, "boundary"), (1.0, -1.0, 1.0, -1.0, -1.0, "no"),
           (1.2, -1.2, 1.2, -1.2, -1.2, "boundary"), (1.5, -1.5, 1.2, -1.2, -1.5, "no"),
           (2.0, -2.0, 1.2, -1.2, -2.0, "no")],
}


# --- the data layer -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_exercise1_table_matches_the_reference(advantage):
    rows = ce.exercise1_table(advantage, 0.2)
    assert [row.r for row in rows] == [ref[0] for ref in REFERENCE_TABLE[advantage]]
    for row, (r, r_a, clip_r, clip_a, l_clip, status) in zip(rows, REFERENCE_TABLE[advantage]):
        assert (row.r_times_a, row.clipped_r, row.clip_times_a, row.l_clip) == \
            pytest.approx((r_a, clip_r, clip_a, l_clip), abs=1e-12), f"r={r}"
        assert row.clipped == (status == "yes"), f"r={r}"
        if status == "boundary":
            assert row.status == "boundary"
        if status == "no":  # the reference A=+1 table writes r on a bound as 'no'; the package says 'boundary'
            assert row.status == ("boundary" if r in (0.8, 1.2) else "no")
        if status == "yes":
            assert row.grad_logprob == 0.0
        elif r not in (0.8, 1.2):
            assert row.grad_logprob == pytest.approx(r_a, abs=1e-12) and row.grad_logprob != 0.0


def test_exercise1_with_clip_ratio_0_1():
    rows = {row.r: row for row in ce.exercise1_table(1.0, 0.1)}
    # band [0.9, 1.1]: r = 1.2 is now clipped at 1.1; r = 0.8 stays unclipped (min(0.8, 0.9) = 0.8)
    assert rows[1.2].l_clip == pytest.approx(1.1) and rows[1.2].clipped and rows[1.2].grad_logprob == 0.0
    assert rows[1.1].status == "boundary"
    assert rows[0.8].l_clip == pytest.approx(0.8) and not rows[0.8].clipped
    rows = {row.r: row for row in ce.exercise1_table(-1.0, 0.1)}
    assert rows[0.8].l_clip == pytest.approx(-0.9) and rows[0.8].clipped
    assert rows[1.5].l_clip == pytest.approx(-1.5) and not rows[1.5].clipped


def test_exercise2_target_and_caps():
    t = ce.exercise2_target(0.2)
    assert t.pi_old == pytest.approx((1 / 3,) * 3, abs=1e-12)
    # by hand: 2.718 / 4.086 ≈ 0.665, 1.000 / 4.086 ≈ 0.245, 0.368 / 4.086 ≈ 0.090
    assert [round(p, 3) for p in t.pi_target] == [0.665, 0.245, 0.090]
    z = math.e + 1 + 1 / math.e
    assert t.pi_target == pytest.approx((math.e / z, 1 / z, 1 / math.e / z), abs=1e-12)
    # by hand r = 1.995, 0.735, 0.270 (3 × the rounded π); exact values 1.9957…, 0.7342…, 0.2701…
    assert t.ratios == pytest.approx((1.995, 0.735, 0.270), abs=1e-3)
    assert t.ratios == pytest.approx((3 * math.e / z, 3 / z, 3 / math.e / z), abs=1e-12)
    assert t.inside == (False, False, False)
    assert (round(t.cap_high, 3), round(t.floor_low, 3)) == (0.400, 0.267)


def test_exercise2_caps_with_clip_ratio_0_1():
    t = ce.exercise2_target(0.1)
    assert (round(t.cap_high, 3), round(t.floor_low, 3)) == (0.367, 0.300)
    assert t.pi_target == pytest.approx(ce.exercise2_target(0.2).pi_target)  # the target does not depend on ε


def _surrogate_grad(pi, clip_ratio):
    """∂ compute_ppo_loss / ∂ logits at logits = log π for the exercise batch, recomputed independently."""
    logits = torch.log(torch.tensor(pi, dtype=torch.float64)).requires_grad_(True)
    logprobs = torch.log_softmax(logits, -1)  # one sample per action: actions [0, 1, 2]
    old = torch.full((3,), math.log(1 / 3), dtype=torch.float64)
    loss = compute_ppo_loss(logprobs, old, torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64), clip_ratio)
    (grad,) = torch.autograd.grad(loss, logits)
    return grad


@pytest.mark.parametrize("clip_ratio", [0.2, 0.1])
def test_exercise2_epochs_stop_at_the_clip_boundary(clip_ratio):
    records = ce.exercise2_epochs(clip_ratio, epochs=10, lr=0.2)
    assert [r.epoch for r in records] == list(range(11))
    first = records[0]
    assert first.pi == pytest.approx((1 / 3,) * 3) and first.ratios == pytest.approx((1.0,) * 3)
    assert first.loss == pytest.approx(0.0, abs=1e-15) and first.clip_fraction == 0.0
    # at θ_old: ∂loss/∂z = −(1/3)·(1, 0, −1)
    assert first.grad == pytest.approx((-1 / 3, 0.0, 1 / 3), abs=1e-12)
    # the first step moves the right way
    assert records[1].pi[0] > 1 / 3 > records[1].pi[2]
    final = records[-1]
    assert final.ratios[0] >= 1 + clip_ratio and final.ratios[2] <= 1 - clip_ratio
    assert final.grad == (0.0, 0.0, 0.0)
    assert torch.all(_surrogate_grad(final.pi, clip_ratio) == 0.0)
    assert final.clip_fraction == pytest.approx(2 / 3)
    # reached in a handful of epochs, and nothing moves afterwards
    stop = ce.first_epoch_at_boundary(records)
    assert stop is not None and stop <= 5
    assert all(not r.grad_is_zero for r in records[:stop])
    assert all(r.pi == records[stop].pi for r in records[stop:])
    # the clipped objective −loss = (L(a1) + 0 + L(a3)) / 3 = ((1+ε) − (1−ε)) / 3 at the boundary
    assert final.loss == pytest.approx(-(2 * clip_ratio) / 3, abs=1e-12)


def test_exercise2_epochs_before_the_boundary_are_unclipped():
    records = ce.exercise2_epochs(0.2, epochs=1, lr=0.05)
    # one small step: still inside the band, the gradient non-zero and equal to the unclipped one
    rec = records[-1]
    assert 0.8 < rec.ratios[2] < 1.0 < rec.ratios[0] < 1.2
    assert rec.clip_fraction == 0.0
    assert torch.allclose(torch.tensor(rec.grad, dtype=torch.float64), _surrogate_grad(rec.pi, 0.2))
    assert max(abs(g) for g in rec.grad) > 0.3


def test_ppo_iterations_converge_to_the_best_arm():
    records = ce.ppo_iterations(0.2, iterations=10, epochs=10, lr=0.2)
    assert len(records) == 10
    first = records[0]
    assert first.rewards == (1.0, 0.0, -1.0)
    assert first.advantages == pytest.approx((1.0, 0.0, -1.0))  # the exercise's A under uniform π
    assert first.pi == pytest.approx(ce.exercise2_epochs(0.2, 10, 0.2)[-1].pi)  # iteration 1 = exercise 2
    for rec in records:
        # A = reward − Σ π_old·reward
        baseline = sum(p * r for p, r in zip(rec.pi_old, rec.rewards))
        assert rec.advantages == pytest.approx(tuple(r - baseline for r in rec.rewards), abs=1e-12)
        # θ_old is reset every iteration: a best-arm ratio above the cap would mean it was not
        assert rec.ratios[0] < 1.2 + 0.05
    best = [rec.pi[0] for rec in records]
    assert all(b > a for a, b in zip(best, best[1:]))
    assert best[-1] > 0.9


# --- the entry point ----------------------------------------------------------------------------------------

def _numbers(line):
    return [float(x) for x in re.findall(r"-?\d+\.\d+", line)]


def _check_png(path):
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert 300 <= image.shape[0] <= 2000 and 600 <= image.shape[1] <= 3000
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_main_prints_the_tables(tmp_path, capsys):
    assert ce.main(["--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    # exercise 1: each reference row as printed (r, r·A, clip(r), clip·A, L^CLIP)
    start_pos = lines.index("A = +1")
    start_neg = lines.index("A = -1")
    for advantage, start in ((1.0, start_pos), (-1.0, start_neg)):
        printed = lines[start + 2:start + 2 + len(REFERENCE_TABLE[advantage])]
        for line, ref in zip(printed, REFERENCE_TABLE[advantage]):
            assert _numbers(line)[:5] == pytest.approx(ref[:5]), line
            status = line.split()[5]
            assert status == ("boundary" if ref[0] in (0.8, 1.2) else ref[5]), line
    # exercise 2
    assert "π_new = [0.665, 0.245, 0.090]" in out
    assert re.search(r"a_1\s+0\.333\s+0\.665\s+1\.99[56]\s+NO \(above\)", out)
    assert re.search(r"a_2\s+0\.333\s+0\.245\s+0\.73[45]\s+NO \(below\)", out)
    assert re.search(r"a_3\s+0\.333\s+0\.090\s+0\.270\s+NO \(below\)", out)
    assert "π_old·(1+ε) = 0.400" in out and "π_old·(1−ε) = 0.267" in out
    assert "plain SGD" in out and "lr = 0.2" in out
    stop = re.search(r"r\(a_1\) = (\d\.\d+) ≥ 1\.2, r\(a_3\) = (\d\.\d+) ≤ 0\.8, gradient exactly zero", out)
    assert stop and float(stop.group(1)) >= 1.2 and float(stop.group(2)) <= 0.8
    # iterations: the last row's π(best arm)
    last_iteration = lines[lines.index(next(line for line in lines if line.startswith("figure:"))) - 2]
    assert _numbers(last_iteration)[3] > 0.9
    _check_png(tmp_path / ce.FIGURE_NAME)


def test_main_with_clip_ratio_0_1(tmp_path, capsys):
    assert ce.main(["--clip-ratio", "0.1", "--output-dir", str(tmp_path), "--iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert "π_old·(1+ε) = 0.367" in out and "π_old·(1−ε) = 0.300" in out
    assert "clip(r, 0.9, 1.1)" in out
    assert re.search(r"r\(a_1\) = \d\.\d+ ≥ 1\.1, r\(a_3\) = \d\.\d+ ≤ 0\.9", out)
    _check_png(tmp_path / ce.FIGURE_NAME)


@pytest.mark.parametrize("argv,argument", [(["--clip-ratio", "1.5"], "--clip-ratio"),
                                           (["--clip-ratio", "0"], "--clip-ratio"),
                                           (["--epochs", "0"], "--epochs"),
                                           (["--lr", "-1"], "--lr")])
def test_main_refuses_bad_arguments(argv, argument, capsys):
    with pytest.raises(SystemExit) as exc:
        ce.main(argv)
    assert exc.value.code == 2
    assert argument in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    out_dir = tmp_path / "tmp"
    proc = subprocess.run([sys.executable, "-m", "experiments.clip_exercises", "--output-dir", str(out_dir)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Exercise 1" in proc.stdout and "Exercise 2" in proc.stdout
    assert "π_new = [0.665, 0.245, 0.090]" in proc.stdout
    assert f"figure: {out_dir / ce.FIGURE_NAME}" in proc.stdout
    _check_png(out_dir / ce.FIGURE_NAME)
    image = imread(out_dir / ce.FIGURE_NAME)
    assert image.shape[:2] == (450, 1100)  # figsize 11 × 4.5 in at 100 dpi
