"""TensorBoard logging of a run: scalars against the global env step, the config as text, HParams.

The events are TensorBoard's records (``tensorboard.summary.writer.record_writer.RecordWriter``) of the protos
PyTorch's ``SummaryWriter`` writes (``torch.utils.tensorboard.summary`` builds the text and HParams ones), in a file
named as its writer names them. They are written here, from the training thread, through a buffered file flushed
every ``FLUSH_SECONDS``, at each checkpoint and at the end, rather than by ``SummaryWriter``: its writer thread
per event file reopens the file for every event and computes the records' checksums in Python, and a population's
tens of such threads, woken every iteration, held the interpreter lock often enough to slow the training thread by
a tenth or more.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path
from typing import Mapping, Optional, Union

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter

FLUSH_SECONDS = 5.0
"""At most this long between a scalar being logged and its reaching the event file (TensorBoard's live view)."""

_file_numbers = itertools.count()  # event files opened by this process (part of each file's name)


class TensorBoardLogger:
    """One event file per logger in ``log_dir``. ``purge_step`` (on resume) makes TensorBoard drop events an
    interrupted run wrote at or after that step, so the resumed curves continue without overlap."""

    def __init__(self, log_dir: Union[str, Path], purge_step: Optional[int] = None):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                f"{next(_file_numbers)}")
        self._file = open(self.log_dir / name, "wb")
        self._records = RecordWriter(self._file)
        self._flushed = time.monotonic()
        self._event(Event(file_version="brain.Event:2", step=purge_step or 0))
        if purge_step is not None:  # what SummaryWriter(purge_step=…) writes: a restart at that step
            self._event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def _event(self, event: Event) -> None:
        event.wall_time = time.time()
        self._records.write(event.SerializeToString())

    def _summary(self, summary: Summary, step: int) -> None:
        self._event(Event(summary=summary, step=step))
        if time.monotonic() - self._flushed > FLUSH_SECONDS:
            self.flush()

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """All of one step's scalars as one event (what ``SummaryWriter.add_scalar`` writes per tag, in one
        summary)."""
        self._summary(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))
                                     for tag, value in values.items()]), step)

    def text(self, tag: str, text: str) -> None:
        """As ``SummaryWriter.add_text(tag, text)``."""
        from torch.utils.tensorboard.summary import text as text_summary

        self._summary(text_summary(tag, text), 0)

    def hparams(self, hparams: Mapping[str, Union[int, float, str, bool]], metrics: Mapping[str, float]) -> None:
        """Record the run's hyperparameters and final metrics for the HParams dashboard (in this run's folder): what
        ``SummaryWriter.add_hparams(hparams, metrics, run_name=".")`` writes, in this file."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        for summary in hparams_summaries(dict(hparams), dict(metrics)):
            self._summary(summary, 0)
        self.scalars(metrics, 0)
        self.flush()

    def flush(self) -> None:
        self._file.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
