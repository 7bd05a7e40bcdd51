"""Fixtures of the modeling suite: the tiny R-Mask R-CNN configs and synthetic batch of
:mod:`detector_testutils`, on one torch thread."""
from typing import Any, Callable, Dict, List

import pytest
import torch
from detectron2.config import CfgNode
from detector_testutils import synthetic_batch, tiny_cfg


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tensors are tiny: with several threads, synchronisation (worse on shared cores) dominates."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_cfg() -> Callable[..., CfgNode]:
    return tiny_cfg


@pytest.fixture
def batch() -> List[Dict[str, Any]]:
    return synthetic_batch()
