"""The one device fall-back of the project: entry points (tools, the demo, benchmarks) call it once on
the device a config asks for, so a config written for a GPU still runs on a machine without one; and
what follows from the device: images per forward, the CPU's float handling."""
import logging
from typing import Callable, Dict, Hashable, Iterator, List, Optional, Sequence, TypeVar

import torch

Item = TypeVar("Item")

logger = logging.getLogger(__name__)


def available_device(requested: str) -> str:
    """``requested`` where this machine has it. ``"auto"`` is cuda when available, else cpu; a CUDA
    device without CUDA becomes cpu, logged (Detectron2's default device is cuda, so most configs ask for
it: on a CPU machine that is the normal case, not a warning); anything else is returned as given."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(requested).type == "cuda" and not torch.cuda.is_available():
        logger.info("running on CPU: the config asks for %s but CUDA is not available", requested)
        return "cpu"
    return requested


def images_per_batch(test_ims_per_batch: int, device: str) -> int:
    """``TEST.IMS_PER_BATCH`` resolved for ``MODEL.DEVICE``: 0 is 4 on CUDA (a fuller batch), 1 on the CPU
    (where a batch is no faster than its images one by one)."""
    if test_ims_per_batch < 0:
        raise ValueError(f"TEST.IMS_PER_BATCH must be 0 (by device) or positive, got {test_ims_per_batch}")
    return test_ims_per_batch or (4 if torch.device(device).type == "cuda" else 1)


def batches(items: Sequence[Item], size: int, key: Optional[Callable[[Item], Hashable]] = None
            ) -> Iterator[List[Item]]:
    """``items`` in lists of at most ``size``, each of one ``key`` (groups in the order they first appear,
    items in their order): inputs that go through the model in one forward without one being padded to
    another's size."""
    groups: Dict[Hashable, List[Item]] = {}
    for item in items:
        groups.setdefault(None if key is None else key(item), []).append(item)
    for group in groups.values():
        for start in range(0, len(group), size):
            yield group[start:start + size]


def configure_cpu_math() -> None:
    """Flush denormal floats to zero (process-wide: call it from entry points). Late in training, tiny
    gradients and activations become denormals, which x86 CPUs compute on a microcode path tens of
    times slower (the profiled cost: docs/RESULTS.md). No effect on CUDA."""
    torch.set_flush_denormal(True)
