"""Fixtures of the modeling suite: the tiny R-Mask R-CNN configs and synthetic batch of
:mod:`detector_testutils`, on one torch thread."""
from typing import Any, Callable, Dict, List

import pytest
from detectron2.config import CfgNode
from detector_testutils import synthetic_batch, tiny_cfg
from testutils import single_torch_thread


one_torch_thread = pytest.fixture(autouse=True)(single_torch_thread)


@pytest.fixture
def make_cfg() -> Callable[..., CfgNode]:
    return tiny_cfg


@pytest.fixture
def batch() -> List[Dict[str, Any]]:
    return synthetic_batch()
