"""``keep_freed_memory``: let the C allocator reuse the update's large tensors instead of returning them to the OS.

A population's update allocates and frees activations of ``P × minibatch × hidden`` floats (a few MB) dozens of
times per minibatch step. glibc's malloc serves blocks above ``M_MMAP_THRESHOLD`` (128 KB by default, raised
dynamically) with ``mmap`` and trims the top of its heap above ``M_TRIM_THRESHOLD``, so such blocks go back to the
OS when freed and every new one is page-faulted in again: an element-wise op then costs about twice its
arithmetic. PyTorch's CPU performance-tuning guide answers this with jemalloc or tcmalloc preloaded; raising the
two thresholds (``mallopt(3)``) gets the same reuse from glibc with nothing to install, at the price of up to
``trim_mb`` of freed memory kept by the process. Elsewhere than glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory(mmap_mb: int = 32, trim_mb: int = 64) -> bool:
    """Serve blocks below ``mmap_mb`` from the heap and keep up to ``trim_mb`` of freed heap; once per process.
    Returns whether glibc took the settings (False where there is no glibc)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, mmap_mb << 20)) and bool(mallopt(M_TRIM_THRESHOLD, trim_mb << 20))
    return _done
