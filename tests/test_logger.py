"""The run logger's event files, read back with TensorBoard's own reader: scalars, purge on resume, when events
reach the disk, and no writer thread."""

from __future__ import annotations

import threading

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from agents import logger as logger_module
from agents.logger import TensorBoardLogger
from helpers import read_scalars


def test_scalars_text_and_hparams_read_back_as_summary_writers_do(tmp_path):
    ours = TensorBoardLogger(tmp_path / "ours")
    theirs = SummaryWriter(str(tmp_path / "theirs"))
    for step, values in [(8, {"a/x": 1.5, "a/y": -2.0}), (16, {"a/x": 0.25, "a/y": 3.0})]:
        ours.scalars(values, step)
        for tag, value in values.items():
            theirs.add_scalar(tag, value, step)
    ours.text("config", "lr: 0.1")
    theirs.add_text("config", "lr: 0.1")
    ours.hparams({"lr": 0.1, "env": "CartPole-v1"}, {"final/return": 500.0})
    theirs.add_hparams({"lr": 0.1, "env": "CartPole-v1"}, {"final/return": 500.0}, run_name=".")
    ours.close()
    theirs.close()
    assert read_scalars(tmp_path / "ours") == read_scalars(tmp_path / "theirs") == {
        "a/x": [(8, 1.5), (16, 0.25)], "a/y": [(8, -2.0), (16, 3.0)], "final/return": [(0, 500.0)]}
    accs = []
    for name in ("ours", "theirs"):
        acc = EventAccumulator(str(tmp_path / name))
        acc.Reload()
        accs.append(acc)
    assert [e.tensor_proto for e in accs[0].Tensors("config/text_summary")] == \
        [e.tensor_proto for e in accs[1].Tensors("config/text_summary")]
    assert accs[0].PluginTagToContent("hparams") == accs[1].PluginTagToContent("hparams")


def test_a_resumed_runs_logger_drops_what_the_interrupted_one_wrote_from_its_purge_step(tmp_path):
    first = TensorBoardLogger(tmp_path)
    for step in (10, 20, 30, 40):
        first.scalars({"x": float(step)}, step)
    first.close()
    resumed = TensorBoardLogger(tmp_path, purge_step=21)  # the checkpoint was at step 20
    for step in (30, 40):
        resumed.scalars({"x": -float(step)}, step)
    resumed.close()
    assert read_scalars(tmp_path) == {"x": [(10, 10.0), (20, 20.0), (30, -30.0), (40, -40.0)]}


def test_events_reach_the_file_at_a_flush_or_once_flush_seconds_passed(tmp_path, monkeypatch):
    monkeypatch.setattr(logger_module, "FLUSH_SECONDS", 3600.0)
    log = TensorBoardLogger(tmp_path)
    log.scalars({"x": 1.0}, 1)
    assert read_scalars(tmp_path) == {}  # buffered
    log.flush()
    assert read_scalars(tmp_path) == {"x": [(1, 1.0)]}
    monkeypatch.setattr(logger_module, "FLUSH_SECONDS", 0.0)
    log.scalars({"x": 2.0}, 2)
    assert read_scalars(tmp_path) == {"x": [(1, 1.0), (2, 2.0)]}  # on disk without a flush
    log.close()


@pytest.mark.parametrize("loggers", [1, 24])
def test_loggers_start_no_thread(tmp_path, loggers):
    """A population opens one logger per member: none starts a writer thread (SummaryWriter starts one each)."""
    before = threading.active_count()
    opened = [TensorBoardLogger(tmp_path / str(k)) for k in range(loggers)]
    for log in opened:
        log.scalars({"x": 1.0}, 1)
    assert threading.active_count() == before
    for log in opened:
        log.close()


def test_record_checksums_are_tensorboards():
    """The records' CRC-32C (computed from tables) equals TensorBoard's own loop, for lengths the tables cover and
    beyond, and on the standard check input. (A wrong one fails the tests above too: TensorBoard's reader checks.)"""
    import numpy as np
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c, masked_crc32c

    rng = np.random.default_rng(0)
    for n in [*range(0, 40), 255, 256, 300, 1000, logger_module._CRC_BYTES - 1, logger_module._CRC_BYTES,
              logger_module._CRC_BYTES + 1, 3000]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert logger_module.masked_crc32c(data) == masked_crc32c(data), n
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value: TensorBoard's is the reference here
    assert logger_module.masked_crc32c(b"123456789") == (((0xE3069283 >> 15) | (0xE3069283 << 17))
                                                         + 0xA282EAD8) & 0xFFFFFFFF
