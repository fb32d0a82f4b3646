"""Hydra launcher ``hydra/launcher=population``: the jobs of a multirun batch trained together as populations."""
