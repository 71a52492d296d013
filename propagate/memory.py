"""glibc heap settings for the command line and benchmarks.

PyTorch's CPU tensors come from malloc.  By default glibc trims the heap whenever its top has
128 KiB free and moves its mmap threshold around as blocks are freed, so a loop that allocates and
frees the same multi-MB temporaries every layer keeps returning memory to the kernel and
page-faulting it back: the recorder benchmark swung between +12% and +30% overhead from one
process to the next, and plain forward+backward ran 10% slower.

* ``tune_malloc("speed")``: keep freed memory (no trimming) and serve blocks up to 32 MiB from the
  heap; memory stays at its peak until exit.  Not applied by default: on this project's VM it did
  not remove the process-to-process swings of the recorder benchmark (those persist with it).
* ``tune_malloc("memory")``: a low fixed mmap threshold, so big blocks go back to the system when
  freed — the sweep switches to it for nets of a GiB or more (depth 300: 3.6 → 2.2 GB peak),
  where memory, not speed, is what limits.
Never called on import; a no-op where there is no glibc (e.g. macOS).
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
_SETTINGS = {"speed": ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 2**31 - 1)),
             "memory": ((M_MMAP_THRESHOLD, 1 << 16), (M_TRIM_THRESHOLD, 1 << 17))}


def tune_malloc(mode: str = "speed") -> bool:
    """Apply the ``speed`` or ``memory`` settings above; False where mallopt is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(bool(libc.mallopt(param, value)) for param, value in _SETTINGS[mode])
    except (OSError, AttributeError):
        return False
