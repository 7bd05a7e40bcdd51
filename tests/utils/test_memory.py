"""Freed heap memory goes back to the system between tiles (glibc)."""
import platform

import numpy as np
import pytest

from detectron2_myeloma.utils.memory import release_free_memory


def resident_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_heap_blocks_are_handed_back():
    blocks = [np.ones(4096, np.uint8) for _ in range(100_000)]  # 400 MiB of heap blocks under mmap's size
    last = blocks[-1]  # holds the heap's top: freeing the rest leaves free pages inside the heap
    held = resident_mib()
    del blocks
    assert resident_mib() > held - 100  # glibc keeps them
    assert release_free_memory()
    assert resident_mib() < held - 300
    assert last.sum() == 4096
