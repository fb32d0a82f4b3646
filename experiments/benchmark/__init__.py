"""The benchmark (``python -m experiments.benchmark``, console script ``ppo-benchmark``): one module per report.

- ``cli``: the arguments, the dispatch to the reports, the JSON; ``report``: the printed table and its targets.
- ``throughput``, ``solve``, ``memory``, ``parity``: the reports of ``--mode all``; ``sweep``: population vs joblib
  on a 48-run sweep; ``scores`` (with ``scores_tasks``, ``scores_anchors``, ``scores_runs``, ``scores_table``):
  per-task scores against published anchors, hours long.
- ``ours``: our trainer run in-process, instrumented through its callbacks; ``sb3`` and ``cleanrl``: the
  references; ``common``: statistics, configs, processes timed from the outside, formatting.
"""

from experiments.benchmark.cli import MODES, main, parse_args, run_benchmark

__all__ = ["MODES", "main", "parse_args", "run_benchmark"]
