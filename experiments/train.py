"""Train PPO: ``python -m experiments.train [overrides]`` (console script ``ppo-train``).

Examples::

    python -m experiments.train                                   # CartPole-v1, tuned defaults
    python -m experiments.train env=bandit agent.clip_ratio=0.1 seed=3
    python -m experiments.train env=gym env.id=Acrobot-v1 total_timesteps=200000
    python -m experiments.train -m agent.clip_ratio=0.1,0.2,0.3 agent.entropy_coef=0.0,0.01 seed=0,1,2
    python -m experiments.train -m agent.clip_ratio=0.1,0.2 seed=0,1 hydra/launcher=population   # trained together
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from conf import CONF_DIR
from experiments import config as _config  # noqa: F401  (registers the schema)
from experiments import population
from experiments.entry import hydra_one_line_errors, user_errors


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | population.PopulationJob:
    """Compose → validate → train → return the final evaluation's mean return (a sweeper's objective).

    Under ``hydra/launcher=population`` the job is only validated and registered here; the launcher trains the
    registered jobs together afterwards (``experiments/population.py``).
    """
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    with user_errors():
        if population.is_collecting():
            return population.register(cfg, hc.runtime.output_dir, overrides=overrides)
        from experiments.run import run_training  # here: a process that only registers jobs never imports torch

        return run_training(cfg, hc.runtime.output_dir, overrides=overrides)


def main() -> None:
    hydra_one_line_errors(hydra_main)


if __name__ == "__main__":
    main()
