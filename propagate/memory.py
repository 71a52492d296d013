"""glibc heap setting for deep sweeps.

glibc raises its mmap threshold each time a large block is freed, after which the engine's many
1–4 MB temporaries come from the heap and fragment it: a depth-300 sweep peaked at 3.6 GB of RSS
against 2.2 GB with a low fixed threshold, which keeps those blocks in mmap so freed memory goes
back to the system.  Every such block is then page-faulted afresh, which cost the default sweep 17%
of its time, so the sweep asks for it only for nets of a GiB or more, where memory is what limits.
Never called on import; a no-op where there is no glibc (e.g. macOS).
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def return_freed_memory() -> bool:
    """Serve blocks of 64 KiB or more by mmap and trim the heap eagerly; False where mallopt is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 16)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 17))
    except (OSError, AttributeError):
        return False
