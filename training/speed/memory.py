"""Keep freed memory in the process during training instead of handing it back to the OS at every free.

glibc serves large allocations (above a threshold that only grows to 32 MiB) with their own mmap and unmaps
them on free, and trims the heap top above 128 KiB. A training step allocates and frees hundreds of
multi-megabyte activations and gradients, so every step pays page faults and zero-filling of fresh pages for
memory it just gave back: measured here, a packed LoRA step ran 4-18 % faster with the settings below (three
process pairs on a noisy shared VM). The price is that the process keeps its peak heap until it exits, which a
training job reaches anyway. Intel's PyTorch CPU guides get the same effect by preloading jemalloc or
tcmalloc; glibc's own switches need nothing installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters from <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # allocations above 1 GiB (a chunk of logits is < 1 GiB) still get their own mapping
TRIM_THRESHOLD = (1 << 31) - 1  # the largest value the int parameter takes: ~never trim


def retain_freed_memory() -> bool:
    """Switch glibc malloc to keep freed memory for reuse; False where that does not apply (not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
