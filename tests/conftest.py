import os

import pytest
import torch

# Tiny networks: one torch thread is fastest and keeps results reproducible.
torch.set_num_threads(1)
os.environ.setdefault("HYDRA_FULL_ERROR", "0")


@pytest.fixture
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent
