"""Giving freed memory back to the system between pieces of work.

glibc serves allocations of a few MiB from its heap once its adaptive mmap threshold has
grown, and keeps the memory when they are freed: without a trim, a worker that measured
a large window holds its peak for the rest of the run, and the next property's peak
comes on top of it. `trim_heap` (glibc's malloc_trim) returns the free heap to the system;
it costs a few milliseconds and does nothing on other C libraries.
"""

from __future__ import annotations

import ctypes
import gc

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None)
except OSError:  # pragma: no cover - a platform without a C library handle
    _LIBC = None


def trim_heap() -> None:
    """Collect unreachable objects, then return the free heap to the system."""
    gc.collect()
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
