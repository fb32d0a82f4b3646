"""Published PPO scores of the score benchmark's tasks (CleanRL's and rl-baselines3-zoo's, with their sources), and
how a task's mean final evaluation is judged against them (PASS / MISS / n/a)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

CLEANRL_PPO_URL = "https://docs.cleanrl.dev/rl-algorithms/ppo/#ppopy"
CLEANRL_CONTINUOUS_URL = "https://docs.cleanrl.dev/rl-algorithms/ppo/#ppo_continuous_actionpy"
ZOO_URL = "https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md"


@dataclass(frozen=True)
class Anchor:
    """A published PPO score of a task (higher is better)."""

    value: float
    """The figure compared with ours: the published mean (the top of a published range)."""
    budget: int
    """Env steps it was trained for."""
    source: str
    """Who published it (and which script)."""
    env: str
    """The env version it was measured on."""
    runs: str
    """How many runs it summarises."""
    url: str
    """Where it is published."""
    low: Optional[float] = None
    """The bottom of a published range (None: a single figure)."""
    note: str = ""
    """What else differs (e.g. the zoo's gSDE)."""

    def figure(self) -> str:
        return f"{self.low:,g}–{self.value:,g}" if self.low is not None else f"{self.value:,g}"

    def label(self) -> str:
        """``CleanRL ppo.py 490 @ 500k (CartPole-v1, 3 seeds)``."""
        extra = f"; {self.note}" if self.note else ""
        return f"{self.source} {self.figure()} @ {_steps(self.budget)} ({self.env}, {self.runs}{extra})"


def _cleanrl(value: float, budget: int, env: str, low: Optional[float] = None) -> Anchor:
    continuous = env.split("-")[0] in MUJOCO_TASKS
    return Anchor(value, budget, "CleanRL ppo_continuous_action.py" if continuous else "CleanRL ppo.py", env,
                  "3 seeds", CLEANRL_CONTINUOUS_URL if continuous else CLEANRL_PPO_URL, low)


def _zoo(value: float, budget: int, env: str, note: str = "") -> Anchor:
    return Anchor(value, budget, "rl-zoo PPO", env, "1 run", ZOO_URL, note=note)


MUJOCO_TASKS = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Swimmer", "InvertedPendulum")

# Keyed by task: the Gymnasium id without its version (LunarLander with continuous=True is LunarLanderContinuous),
# since the anchors were measured on older versions of the same tasks. rl-zoo's figures are one trained agent each
# (its benchmark.md says so), on the env versions of its time (MuJoCo v3, LunarLander v2); CleanRL's are 3 seeds,
# its MuJoCo ones on v4. Ranges are kept as published; the top of a range is what PASS/MISS compares with.
ANCHORS: dict[str, tuple[Anchor, ...]] = {
    "CartPole": (_cleanrl(490, 500_000, "CartPole-v1"),),
    "Acrobot": (_cleanrl(-86, 500_000, "Acrobot-v1"), _zoo(-73.5, 1_000_000, "Acrobot-v1")),
    "MountainCar": (_cleanrl(-200, 500_000, "MountainCar-v0"), _zoo(-110, 1_000_000, "MountainCar-v0")),
    "Pendulum": (_zoo(-172, 100_000, "Pendulum-v1", note="the zoo uses gSDE"),),
    "LunarLander": (_zoo(242, 1_000_000, "LunarLander-v2"),),
    "LunarLanderContinuous": (_zoo(271, 1_000_000, "LunarLanderContinuous-v2"),),
    "BipedalWalker": (_zoo(288, 5_000_000, "BipedalWalker-v3"),),
    "HalfCheetah": (_cleanrl(2906, 1_000_000, "HalfCheetah-v4", low=1443), _zoo(5819, 1_000_000, "HalfCheetah-v3")),
    "Hopper": (_cleanrl(2383, 1_000_000, "Hopper-v4"), _zoo(2410, 1_000_000, "Hopper-v3")),
    "Walker2d": (_cleanrl(2891, 1_000_000, "Walker2d-v4", low=2288), _zoo(3479, 1_000_000, "Walker2d-v3")),
    "Ant": (_zoo(1327, 1_000_000, "Ant-v3"),),
    "Swimmer": (_zoo(282, 1_000_000, "Swimmer-v3"),),
    "InvertedPendulum": (_cleanrl(963, 1_000_000, "InvertedPendulum-v4"),),
}
ANCHOR_CAVEAT = ("anchors: higher is better; rl-zoo figures are one run each on older env versions (MuJoCo v3, "
                 "LunarLander v2), CleanRL's are 3 seeds (MuJoCo on v4); ours run on today's versions")


def task_key(env_id: str, kwargs: Optional[dict] = None) -> str:
    """The anchors' name of a task: ``HalfCheetah-v5`` → ``HalfCheetah``; LunarLander with ``continuous=True`` →
    ``LunarLanderContinuous``; BipedalWalker with ``hardcore=True`` → ``BipedalWalkerHardcore``."""
    kwargs = kwargs or {}
    name = re.sub(r"-v\d+$", "", env_id.rsplit(":", 1)[-1].rsplit("/", 1)[-1])
    if name == "LunarLander" and kwargs.get("continuous"):
        name = "LunarLanderContinuous"
    if kwargs.get("hardcore"):
        name += "Hardcore"
    return name


def judge(mean: float, budget: int, anchors: Sequence[Anchor]) -> tuple[str, Optional[Anchor], str]:
    """(status, the anchor compared with, why): PASS/MISS against the best anchor of the same budget; without
    one, PASS when ``mean`` reaches the best anchor of a larger budget (fewer steps did as well), else n/a."""
    same = [a for a in anchors if a.budget == budget]
    larger = [a for a in anchors if a.budget > budget]
    if same:
        best = max(same, key=lambda a: a.value)
        return ("PASS" if mean >= best.value else "MISS"), best, "best anchor at the same budget"
    if larger:
        best = max(larger, key=lambda a: a.value)
        if mean >= best.value:
            return "PASS", best, f"reached with fewer steps than the anchor's {_steps(best.budget)}"
        return "n/a", best, f"no anchor at {_steps(budget)}; the anchor had {_steps(best.budget)} steps"
    if anchors:
        return "n/a", None, f"anchors only at smaller budgets than {_steps(budget)}"
    return "n/a", None, "no published anchor"


def _steps(n: int) -> str:
    """500000 → 500k, 1000000 → 1M, 4096 → 4,096."""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1e6:g}M"
    if n >= 10_000 and n % 1_000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"
