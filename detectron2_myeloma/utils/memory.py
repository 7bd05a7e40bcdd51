"""Handing freed memory back to the operating system between the tiles of a large image.

glibc keeps freed heap memory for reuse, and after the first few tiles raises its threshold for
serving large blocks by ``mmap`` (returned on free), so the same-sized buffers of each tile come from a
heap that fragments: resident memory then creeps up tile after tile although nothing is kept.
``malloc_trim`` returns the free pages; other C libraries have no such call, and nothing is done.
"""
import ctypes
import ctypes.util
from typing import Callable, Optional


def _malloc_trim() -> Optional[Callable[[int], int]]:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Returns the C heap's free pages to the system where the C library can (glibc); True if it did
    hand some back."""
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False
