"""``agents.allocator.keep_freed_memory``: a population's multi-MB activations come from the heap, not from fresh
``mmap`` calls (glibc's ``mallinfo2`` counts the bytes held in mmapped blocks)."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys

import pytest

PROBE = """
import ctypes, ctypes.util, sys
import torch

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    from agents.allocator import keep_freed_memory
    assert keep_freed_memory()
before = libc.mallinfo2().hblkhd
x = torch.empty(24, 256, 64).fill_(1.0)   # 1.5 MB: an activation of a 24-member update
print(libc.mallinfo2().hblkhd - before)
"""


def _mmapped_bytes(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(
    ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2"), reason="glibc ≥ 2.33 only")
def test_large_tensors_come_from_the_heap_once_freed_memory_is_kept():
    size = 24 * 256 * 64 * 4
    assert _mmapped_bytes("default") >= size  # glibc's default: a fresh mapping for a block this large
    assert _mmapped_bytes("keep") == 0
