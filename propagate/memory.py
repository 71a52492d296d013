"""Process memory hygiene for long sweeps.

glibc raises its mmap threshold each time a large block is freed, after which the engine's many
1–4 MB temporaries come from the heap and fragment it: a depth-300 sweep peaked at 3.6 GB of RSS
against 2.2 GB with a fixed threshold.  Fixing the threshold keeps large blocks in mmap, so freed
memory goes back to the system — but every such block is then page-faulted afresh, which cost the
default sweep 17% of its time.  So the sweep turns it on only for calls of a GiB or more (deep
nets), where memory is what limits; called there, never on import.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3


def fix_mmap_threshold(nbytes: int = 1 << 16) -> bool:
    """Set glibc's mmap threshold (returns False where there is no glibc, e.g. macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(nbytes)))
    except (OSError, AttributeError):
        return False
