"""Two PPO clip exercises (the clipped surrogate of Schulman et al. 2017, §3), worked with this package's own functions.

``python -m experiments.clip_exercises [--clip-ratio 0.2] [--output-dir DIR] [--epochs N] [--iterations N] [--lr X]``
(console script ``ppo-clip-exercises``).

- Exercise 1: L^CLIP = min(r·A, clip(r, 1−ε, 1+ε)·A) for every ratio r of the two reference tables,
  A = +1 and A = −1, with ∂L^CLIP/∂log π from autograd (zero where the objective is flat).
- Exercise 2: the 3-action softmax policy at z_old = [0, 0, 0] with advantages A = [+1, 0, −1]:
  the exponentiated-advantage target softmax(A), its ratios against uniform π_old and the clip caps; then
  real PPO epochs (SGD on ``compute_ppo_loss``) on ``TabularActorCritic`` with θ_old held fixed, which stop at
  the clip boundary; then PPO iterations (θ_old reset each time, advantages from the bandit's rewards) that
  converge to the best arm.
- The clipped-objective figure: the clipped objective against r for A = +1 and A = −1, saved as a PNG.

Every ``exercise*`` / ``ppo_*`` function returns plain records (tests check their numbers); ``format_*`` and
``main`` only print them.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

from agents import TabularActorCritic, categorical_log_prob, clip_fraction, compute_ppo_loss, probability_ratio
from envs import SoftmaxBanditEnv

# The ratios of exercise 1's reference tables, for A = +1 and A = −1.
REFERENCE_RATIOS = {
    +1.0: (0.5, 0.8, 1.0, 1.1, 1.2, 1.3, 1.5, 2.0),
    -1.0: (0.5, 0.7, 0.8, 1.0, 1.2, 1.5, 2.0),
}
# Exercise 2: one sample of each of the three actions, with the exercise's advantages.
EXERCISE2_ADVANTAGES = (1.0, 0.0, -1.0)
# The bandit's mean rewards; under the uniform policy (mean 0) they are the advantages above.
BANDIT_REWARDS = (1.0, 0.0, -1.0)
FIGURE_NAME = "clip_objective.png"
DEFAULT_OUTPUT_DIR = "outputs/clip_exercises"
DEFAULT_EPOCHS = 10
DEFAULT_ITERATIONS = 10
DEFAULT_LR = 0.2

_DTYPE = torch.float64  # the exercises print 3 decimals; float64 keeps r = 1.2 from reading as 1.2000001
_TIE = 1e-9  # |difference| below this counts as equal (r comes back through exp(log r))


# --- exercise 1 ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exercise1Row:
    """One row of an exercise-1 table: the two surrogate terms, their min and which one the min picks."""

    r: float
    advantage: float
    r_times_a: float
    clipped_r: float
    """clip(r, 1−ε, 1+ε)."""
    clip_times_a: float
    l_clip: float
    """L^CLIP = min(r·A, clip(r)·A), from ``compute_ppo_loss`` (which returns −L^CLIP)."""
    clipped: bool
    """The min picks the clipped term and it differs from r·A (the objective is flat in r here)."""
    on_bound: bool
    """r sits on 1−ε or 1+ε, where both terms are equal."""
    grad_logprob: float
    """∂L^CLIP/∂log π from autograd: r·A where the unclipped term is active, 0 where the objective is flat."""

    @property
    def status(self) -> str:
        """'yes' (clipped), 'boundary' (r on 1±ε, not clipped) or 'no'."""
        if self.clipped:
            return "yes"
        return "boundary" if self.on_bound else "no"


def clipped_objective(r: float, advantage: float, clip_ratio: float) -> tuple[float, float]:
    """(L^CLIP, ∂L^CLIP/∂log π) at ratio ``r`` for one sample, through ``compute_ppo_loss`` and autograd."""
    logprob = torch.tensor([math.log(r)], dtype=_DTYPE, requires_grad=True)
    old_logprob = torch.zeros(1, dtype=_DTYPE)
    loss = compute_ppo_loss(logprob, old_logprob, torch.tensor([advantage], dtype=_DTYPE), clip_ratio)
    (grad,) = torch.autograd.grad(-loss, logprob)
    return -loss.item(), grad.item()


def exercise1_table(advantage: float, clip_ratio: float = 0.2,
                    ratios: Optional[Sequence[float]] = None) -> list[Exercise1Row]:
    """The exercise-1 table for one advantage; ``ratios`` default to the reference table for that sign."""
    if ratios is None:
        ratios = REFERENCE_RATIOS[1.0 if advantage > 0 else -1.0]
    rows = []
    for r in ratios:
        ratio = probability_ratio(torch.tensor(math.log(r), dtype=_DTYPE), torch.tensor(0.0, dtype=_DTYPE))
        clipped_r = torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
        r_times_a = (ratio * advantage).item()
        clip_times_a = (clipped_r * advantage).item()
        l_clip, grad = clipped_objective(r, advantage, clip_ratio)
        rows.append(Exercise1Row(
            r=r, advantage=advantage, r_times_a=r_times_a, clipped_r=clipped_r.item(), clip_times_a=clip_times_a,
            l_clip=l_clip, clipped=clip_times_a < r_times_a - _TIE,
            on_bound=min(abs(r - (1.0 - clip_ratio)), abs(r - (1.0 + clip_ratio))) < _TIE,
            grad_logprob=grad,
        ))
    return rows


# --- exercise 2: the unconstrained target and the clip caps -------------------------------------------------

@dataclass(frozen=True)
class Exercise2Target:
    """Part A/B of exercise 2: π_new ∝ exp(A/T) against the uniform π_old, and what the clip allows."""

    advantages: tuple[float, ...]
    pi_old: tuple[float, ...]
    pi_target: tuple[float, ...]
    ratios: tuple[float, ...]
    """r = π_target / π_old per action."""
    inside: tuple[bool, ...]
    """r inside [1−ε, 1+ε]."""
    cap_high: float
    """π_old·(1+ε): how far one PPO update lets a positive-advantage action's probability rise."""
    floor_low: float
    """π_old·(1−ε): how far one PPO update lets a negative-advantage action's probability fall."""


def exercise2_target(clip_ratio: float = 0.2, advantages: Sequence[float] = EXERCISE2_ADVANTAGES,
                     temperature: float = 1.0) -> Exercise2Target:
    """softmax(A/T) as a tabular policy's logits, its ratios against z_old = 0 and the caps 1/K·(1±ε)."""
    k = len(advantages)
    actions = torch.arange(k)
    old_logits = TabularActorCritic(k).logits.detach().to(_DTYPE)  # z_old = [0, …, 0]
    new_logits = torch.tensor(advantages, dtype=_DTYPE) / temperature
    old_logprobs = categorical_log_prob(old_logits.expand(k, -1), actions)
    new_logprobs = categorical_log_prob(new_logits.expand(k, -1), actions)
    ratios = probability_ratio(new_logprobs, old_logprobs)
    pi_old = old_logprobs.exp()
    inside = (ratios >= 1.0 - clip_ratio) & (ratios <= 1.0 + clip_ratio)
    return Exercise2Target(
        advantages=tuple(float(a) for a in advantages), pi_old=tuple(pi_old.tolist()),
        pi_target=tuple(new_logprobs.exp().tolist()), ratios=tuple(ratios.tolist()),
        inside=tuple(bool(x) for x in inside), cap_high=pi_old[0].item() * (1.0 + clip_ratio),
        floor_low=pi_old[0].item() * (1.0 - clip_ratio),
    )


# --- exercise 2: PPO epochs with θ_old fixed ---------------------------------------------------------------

@dataclass(frozen=True)
class EpochRecord:
    """The policy after ``epoch`` SGD steps on the clipped surrogate (epoch 0 = θ_old)."""

    epoch: int
    pi: tuple[float, ...]
    ratios: tuple[float, ...]
    clip_fraction: float
    """Share of the batch with |r − 1| > ε (``agents.clip_fraction``)."""
    loss: float
    """compute_ppo_loss = −mean L^CLIP."""
    grad: tuple[float, ...]
    """∂loss/∂logits at this policy (what the next SGD step would use)."""

    @property
    def grad_is_zero(self) -> bool:
        return all(g == 0.0 for g in self.grad)


class _SurrogateProblem:
    """A tabular softmax policy, a batch of one sample per action, and the clipped surrogate on it."""

    def __init__(self, policy: TabularActorCritic, advantages: torch.Tensor, clip_ratio: float):
        self.policy = policy
        k = policy.logits.shape[0]
        self.obs = torch.ones(k, 1, dtype=_DTYPE)
        self.actions = torch.arange(k)
        self.advantages = advantages
        self.clip_ratio = clip_ratio
        with torch.no_grad():
            self.old_logprobs = policy.evaluate(self.obs, self.actions).logprobs.clone()  # θ_old, frozen

    def measure(self, epoch: int) -> EpochRecord:
        """Evaluate the surrogate and its gradient; leave the gradient in ``logits.grad`` for the optimizer."""
        logits = self.policy.logits
        logits.grad = None
        logprobs = self.policy.evaluate(self.obs, self.actions).logprobs
        loss = compute_ppo_loss(logprobs, self.old_logprobs, self.advantages, self.clip_ratio)
        loss.backward()
        with torch.no_grad():
            ratios = probability_ratio(logprobs, self.old_logprobs)
            return EpochRecord(
                epoch=epoch, pi=tuple(torch.softmax(logits, -1).tolist()), ratios=tuple(ratios.tolist()),
                clip_fraction=clip_fraction(ratios, self.clip_ratio).item(), loss=loss.item(),
                grad=tuple(logits.grad.tolist()),
            )

    def run_epochs(self, epochs: int, lr: float) -> list[EpochRecord]:
        """``epochs`` steps of plain SGD (no momentum: a zero gradient means no move at all)."""
        optimizer = torch.optim.SGD([self.policy.logits], lr=lr, momentum=0.0)
        records = [self.measure(0)]
        for epoch in range(1, epochs + 1):
            optimizer.step()  # uses the gradient left by the previous measure()
            records.append(self.measure(epoch))
        self.policy.logits.grad = None
        return records


def new_tabular_policy(n_actions: int) -> TabularActorCritic:
    """``TabularActorCritic`` in float64: zero logits, i.e. the uniform π_old of exercise 2."""
    return TabularActorCritic(n_actions).to(_DTYPE)


def exercise2_epochs(clip_ratio: float = 0.2, epochs: int = DEFAULT_EPOCHS, lr: float = DEFAULT_LR,
                     advantages: Sequence[float] = EXERCISE2_ADVANTAGES) -> list[EpochRecord]:
    """PPO epochs from z_old = 0 with θ_old fixed: records for epoch 0 (θ_old) … ``epochs``."""
    policy = new_tabular_policy(len(advantages))
    problem = _SurrogateProblem(policy, torch.tensor(advantages, dtype=_DTYPE), clip_ratio)
    return problem.run_epochs(epochs, lr)


def first_epoch_at_boundary(records: Sequence[EpochRecord]) -> Optional[int]:
    """The first epoch whose surrogate gradient is exactly zero (the policy has stopped), or None."""
    for record in records:
        if record.grad_is_zero:
            return record.epoch
    return None


# --- exercise 2: PPO iterations -----------------------------------------------------------------------------

@dataclass(frozen=True)
class IterationRecord:
    """One PPO iteration: fresh rewards, θ_old := θ, advantages under π_old, then ``epochs`` SGD epochs."""

    iteration: int
    pi_old: tuple[float, ...]
    rewards: tuple[float, ...]
    advantages: tuple[float, ...]
    """A = reward − Σ π_old·reward (the exact baseline of this single-state problem)."""
    pi: tuple[float, ...]
    """π after the epochs."""
    ratios: tuple[float, ...]
    clip_fraction: float
    stopped_at_clip: bool
    """The surrogate's gradient was exactly zero after the last epoch."""


def ppo_iterations(clip_ratio: float = 0.2, iterations: int = DEFAULT_ITERATIONS, epochs: int = DEFAULT_EPOCHS,
                   lr: float = DEFAULT_LR, rewards: Sequence[float] = BANDIT_REWARDS,
                   seed: int = 0) -> list[IterationRecord]:
    """PPO on ``SoftmaxBandit-v0``: each iteration pulls every arm once and runs the epochs of exercise 2."""
    env = SoftmaxBanditEnv(rewards=list(rewards))
    env.reset(seed=seed)
    k = int(env.action_space.n)
    policy = new_tabular_policy(k)
    records = []
    for iteration in range(1, iterations + 1):
        pulled = []
        for action in range(k):
            env.reset()
            _, reward, _, _, _ = env.step(action)  # one pull is a whole episode
            pulled.append(float(reward))
        reward_t = torch.tensor(pulled, dtype=_DTYPE)
        with torch.no_grad():
            pi_old = torch.softmax(policy.logits, -1)
            advantages = reward_t - (pi_old * reward_t).sum()
        last = _SurrogateProblem(policy, advantages, clip_ratio).run_epochs(epochs, lr)[-1]
        records.append(IterationRecord(
            iteration=iteration, pi_old=tuple(pi_old.tolist()), rewards=tuple(pulled),
            advantages=tuple(advantages.tolist()), pi=last.pi, ratios=last.ratios,
            clip_fraction=last.clip_fraction, stopped_at_clip=last.grad_is_zero,
        ))
    env.close()
    return records


# --- the clipped-objective figure ------------------------------------------------------------------------------------

def objective_curve(advantage: float, clip_ratio: float, ratios: Sequence[float]) -> list[float]:
    """L^CLIP(r) at each r, through ``compute_ppo_loss``."""
    return [clipped_objective(r, advantage, clip_ratio)[0] for r in ratios]


def save_clip_figure(path: Path, clip_ratio: float = 0.2, points: int = 201) -> Path:
    """Two panels (A = +1, A = −1): r·A, clip(r)·A and L^CLIP against r, clip bounds marked; PNG via Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lo, hi = 1.0 - clip_ratio, 1.0 + clip_ratio
    ratios = [0.01 + 1.99 * i / (points - 1) for i in range(points)]  # (0, 2]: log r must be finite
    fig = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, advantage in zip(axes, (1.0, -1.0)):
        unclipped = [r * advantage for r in ratios]
        clipped = [min(max(r, lo), hi) * advantage for r in ratios]
        ax.plot(ratios, unclipped, "--", color="tab:red", alpha=0.7, label="r·A (unclipped)")
        ax.plot(ratios, clipped, "--", color="tab:orange", alpha=0.7, label="clip(r, 1−ε, 1+ε)·A")
        ax.plot(ratios, objective_curve(advantage, clip_ratio, ratios), color="tab:blue", linewidth=3,
                label="L^CLIP = min(…)")
        table = exercise1_table(advantage, clip_ratio)
        ax.plot([row.r for row in table], [row.l_clip for row in table], "o", color="black", markersize=4,
                label="exercise-1 table")
        for bound in (lo, hi):
            ax.axvline(bound, color="darkred", linestyle=":", linewidth=2)
        ax.axvline(1.0, color="gray", linestyle=":", alpha=0.5)
        ax.text(hi + 0.03, 0.05 if advantage > 0 else -0.35, f"clip bounds\n1±{clip_ratio:g}", color="darkred",
                fontsize=9)
        flat = "r > 1+ε" if advantage > 0 else "r < 1−ε"
        ax.set_title(f"A = {advantage:+g}: flat (zero gradient) for {flat}")
        ax.set_xlabel("probability ratio r = π_θ / π_θold")
        ax.set_ylabel("objective")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left" if advantage > 0 else "lower left")
    fig.suptitle(f"PPO clipped surrogate, ε = clip_ratio = {clip_ratio:g}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# --- printing -----------------------------------------------------------------------------------------------

def _vec(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def format_exercise1(clip_ratio: float) -> str:
    lo, hi = 1.0 - clip_ratio, 1.0 + clip_ratio
    lines = [f"Exercise 1: L^CLIP = min(r·A, clip(r, {lo:g}, {hi:g})·A), ε = clip_ratio = {clip_ratio:g}"]
    for advantage in (1.0, -1.0):
        lines += ["", f"A = {advantage:+g}",
                  f"{'r':>5} {'r·A':>7} {'clip(r)':>8} {'clip·A':>7} {'L^CLIP':>7}  {'clipped?':<9} {'∂L/∂logπ':>9}"]
        for row in exercise1_table(advantage, clip_ratio):
            lines.append(f"{row.r:>5.1f} {row.r_times_a:>7.2f} {row.clipped_r:>8.2f} {row.clip_times_a:>7.2f} "
                         f"{row.l_clip:>7.2f}  {row.status:<9} {row.grad_logprob:>9.3f}")
    lines += ["", "clipped? = yes where the min picks the clipped term, so L^CLIP is flat in r and its gradient is "
              "0;", "boundary = r sits on 1±ε, where both terms are equal (the hand-worked A=+1 table writes these as "
              "'no').", "The clip is one-sided: A=+1 saturates only above 1+ε, A=−1 only below 1−ε; harmful moves "
              "keep their full gradient."]
    return "\n".join(lines)


def format_exercise2(clip_ratio: float, epochs: int, iterations: int, lr: float) -> str:
    target = exercise2_target(clip_ratio)
    lo, hi = 1.0 - clip_ratio, 1.0 + clip_ratio
    lines = ["Exercise 2: 3-action softmax policy, z_old = [0, 0, 0], advantages A = [+1, 0, −1]", "",
             "Part A: exponentiated-advantage target π_new ∝ exp(A)",
             f"  exp(A) = {_vec(math.exp(a) for a in target.advantages)}, "
             f"sum {sum(math.exp(a) for a in target.advantages):.3f}",
             f"  π_old = {_vec(target.pi_old)}", f"  π_new = {_vec(target.pi_target)}", "",
             f"Part B: ratios against the clip [{lo:g}, {hi:g}]",
             f"{'action':>8} {'π_old':>7} {'π_new':>7} {'r':>7}  inside?"]
    for i, (p_old, p_new, r, inside) in enumerate(zip(target.pi_old, target.pi_target, target.ratios,
                                                      target.inside)):
        where = "yes" if inside else ("NO (above)" if r > hi else "NO (below)")
        lines.append(f"{'a_' + str(i + 1):>8} {p_old:>7.3f} {p_new:>7.3f} {r:>7.3f}  {where}")
    lines += ["  (exact r; the hand-worked 1.995 and 0.735 are 3 × the rounded π_new 0.665 and 0.245)",
              f"  one PPO update caps π(a_1) at π_old·(1+ε) = {target.cap_high:.3f} "
              f"and floors π(a_3) at π_old·(1−ε) = {target.floor_low:.3f}", ""]

    records = exercise2_epochs(clip_ratio, epochs, lr)
    stop = first_epoch_at_boundary(records)
    lines += [f"PPO epochs with θ_old fixed at z = 0: plain SGD (no momentum), lr = {lr:g}, on compute_ppo_loss "
              "over the batch actions [0, 1, 2].",
              "  SGD because a zero gradient then means no move at all; Adam's momentum would carry the logits past "
              "the boundary.",
              f"{'epoch':>6} {'π':>23} {'r':>23} {'clip_frac':>9} {'loss':>8} {'max|∇|':>8}"]
    for rec in records:
        lines.append(f"{rec.epoch:>6} {_vec(rec.pi):>23} {_vec(rec.ratios):>23} {rec.clip_fraction:>9.3f} "
                     f"{rec.loss + 0.0:>8.4f} {max(abs(g) for g in rec.grad):>8.4f}")
    final = records[-1]
    if stop is None:
        lines.append(f"  the surrogate's gradient is still non-zero after {epochs} epochs: "
                     "raise --epochs or --lr to reach the clip boundary")
    else:
        lines.append(f"  stopped at the clip boundary from epoch {stop}: r(a_1) = {final.ratios[0]:.3f} ≥ {hi:g}, "
                     f"r(a_3) = {final.ratios[2]:.3f} ≤ {lo:g}, gradient exactly zero "
                     f"(∇ = {list(final.grad)}); later epochs do nothing.")
        lines.append("  (the last step may overshoot the band by up to one SGD step: the clip stops further "
                     "progress, it does not pull back)")

    lines += ["", f"PPO iterations on SoftmaxBandit-v0 (rewards {list(BANDIT_REWARDS)}): θ_old reset each "
              f"iteration, one pull per arm, A = reward − E_π[reward], {epochs} epochs each",
              f"{'iter':>5} {'A':>24} {'π after':>23} {'r':>23} {'at clip':>8}"]
    for rec in ppo_iterations(clip_ratio, iterations, epochs, lr):
        lines.append(f"{rec.iteration:>5} {_vec(rec.advantages):>24} {_vec(rec.pi):>23} {_vec(rec.ratios):>23} "
                     f"{'yes' if rec.stopped_at_clip else 'no':>8}")
    return "\n".join(lines)


def _positive_float(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={text!r} is invalid: must be a number") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{name}={text!r} is invalid: must be a finite number > 0")
        return value
    return parse


def _int_at_least(name: str, minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={text!r} is invalid: must be an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name}={text!r} is invalid: must be an integer ≥ {minimum}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppo-clip-exercises", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip-ratio", type=_positive_float("--clip-ratio"), default=0.2,
                        help="ε of the clipped surrogate, in (0, 1) (default 0.2)")
    parser.add_argument("--output-dir", type=Path, default=Path(DEFAULT_OUTPUT_DIR),
                        help=f"where the figure {FIGURE_NAME} is written (default {DEFAULT_OUTPUT_DIR})")
    parser.add_argument("--epochs", type=_int_at_least("--epochs", 1), default=DEFAULT_EPOCHS,
                        help=f"SGD epochs per PPO update (default {DEFAULT_EPOCHS})")
    parser.add_argument("--iterations", type=_int_at_least("--iterations", 0), default=DEFAULT_ITERATIONS,
                        help=f"PPO iterations on the bandit (default {DEFAULT_ITERATIONS})")
    parser.add_argument("--lr", type=_positive_float("--lr"), default=DEFAULT_LR,
                        help=f"SGD learning rate (default {DEFAULT_LR})")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.clip_ratio >= 1.0:
        parser.error(f"--clip-ratio={args.clip_ratio:g} is invalid: must be in (0, 1)")
    print(format_exercise1(args.clip_ratio))
    print()
    print(format_exercise2(args.clip_ratio, args.epochs, args.iterations, args.lr))
    print()
    try:
        path = save_clip_figure(args.output_dir / FIGURE_NAME, args.clip_ratio)
    except OSError as exc:
        print(f"error: cannot write the figure to --output-dir {str(args.output_dir)!r}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
