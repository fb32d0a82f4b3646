"""TensorBoard logging of a run: scalars against the global env step, the config as text, HParams.

The events are TensorBoard's records (the TFRecord framing of ``tensorboard.summary.writer.record_writer``) of the
protos PyTorch's ``SummaryWriter`` writes (``torch.utils.tensorboard.summary`` builds the text and HParams ones), in a
file named as its writer names them. They are written here, from the training thread, through a buffered file
flushed every ``FLUSH_SECONDS``, at each checkpoint and at the end, rather than by ``SummaryWriter``: its writer
thread per event file reopens the file for every event and computes the records' checksums in Python, and a
population's tens of such threads, woken every iteration, held the interpreter lock often enough to slow the
training thread by a tenth or more. The checksums (CRC-32C, TensorBoard's ``masked_crc32c`` loops over the bytes in
Python) are computed with NumPy table lookups (``masked_crc32c`` here), a tenth of the time for an iteration's
scalars.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import struct
import time
from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as _python_masked_crc32c

FLUSH_SECONDS = 5.0
"""At most this long between a scalar being logged and its reaching the event file (TensorBoard's live view)."""

_file_numbers = itertools.count()  # event files opened by this process (part of each file's name)

_CRC_BYTES = 1024
"""Longest record whose checksum ``masked_crc32c`` computes with its tables (a scalar event is a few hundred bytes);
longer ones (text, HParams: once per run) take TensorBoard's own loop."""


@functools.lru_cache(maxsize=None)
def _crc_tables() -> tuple[np.ndarray, np.ndarray]:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) is linear in its input bits: the register after a
    message is the initial register advanced over the message's length, XOR one term per byte that depends only on
    the byte and how many bytes follow it. ``terms[d, b]``: byte b followed by d bytes; ``start[n]``: the initial
    register (all ones) advanced over n bytes."""
    byte = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        byte = np.where(byte & 1, (byte >> 1) ^ np.uint32(0x82F63B78), byte >> 1).astype(np.uint32)
    terms = np.empty((_CRC_BYTES, 256), dtype=np.uint32)
    terms[0] = byte
    for d in range(1, _CRC_BYTES):
        terms[d] = (terms[d - 1] >> 8) ^ byte[terms[d - 1] & 0xFF]
    start = np.empty(_CRC_BYTES + 1, dtype=np.uint32)
    register = 0xFFFFFFFF
    for n in range(_CRC_BYTES + 1):
        start[n] = register
        register = (register >> 8) ^ int(byte[register & 0xFF])
    return terms[::-1].copy(), start  # terms reversed: row -n is the first of an n-byte message


def masked_crc32c(data: bytes) -> int:
    """TensorBoard's ``masked_crc32c(data)``: the CRC-32C of ``data``, masked as TFRecord files store it."""
    n = len(data)
    if n > _CRC_BYTES or n == 0:
        return _python_masked_crc32c(data)
    terms, start = _crc_tables()
    crc = int(start[n] ^ np.bitwise_xor.reduce(terms[np.arange(_CRC_BYTES - n, _CRC_BYTES),
                                                     np.frombuffer(data, dtype=np.uint8)])) ^ 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TensorBoardLogger:
    """One event file per logger in ``log_dir``. ``purge_step`` (on resume) makes TensorBoard drop events an
    interrupted run wrote at or after that step, so the resumed curves continue without overlap."""

    def __init__(self, log_dir: Union[str, Path], purge_step: Optional[int] = None):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                f"{next(_file_numbers)}")
        self._file = open(self.log_dir / name, "wb")
        self._flushed = time.monotonic()
        self._event(Event(file_version="brain.Event:2", step=purge_step or 0))
        if purge_step is not None:  # what SummaryWriter(purge_step=…) writes: a restart at that step
            self._event(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    def _event(self, event: Event) -> None:
        """One TFRecord: length, its checksum, the serialized event, its checksum (``RecordWriter.write``'s)."""
        event.wall_time = time.time()
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(b"".join((header, struct.pack("<I", masked_crc32c(header)), data,
                                   struct.pack("<I", masked_crc32c(data)))))

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
