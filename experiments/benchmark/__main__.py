"""``python -m experiments.benchmark``: see ``experiments.benchmark.cli``."""

from experiments.benchmark.cli import main

if __name__ == "__main__":
    main()
