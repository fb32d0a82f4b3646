"""Entry points: where Hydra configs meet the code in ``agents/`` and ``envs/``."""
