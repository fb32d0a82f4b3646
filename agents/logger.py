"""TensorBoard logging of a run: scalars against the global env step, the config as text, HParams."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter


class TensorBoardLogger:
    """One event folder per run. ``purge_step`` (on resume) makes TensorBoard drop events an interrupted
    run wrote at or after that step, so the resumed curves continue without overlap."""

    def __init__(self, log_dir: Union[str, Path], purge_step: Optional[int] = None):
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step, flush_secs=30)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """All of one step's scalars as one event (what ``add_scalar`` writes per tag, in one summary): a few
        times cheaper per iteration, which counts once a population logs for every member."""
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value)) for tag, value in values.items()])
        self.writer._get_file_writer().add_summary(summary, step)

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text)

    def hparams(self, hparams: Mapping[str, Union[int, float, str, bool]], metrics: Mapping[str, float]) -> None:
        """Record the run's hyperparameters and final metrics for the HParams dashboard (in this run's folder)."""
        self.writer.add_hparams(dict(hparams), dict(metrics), run_name=".")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
