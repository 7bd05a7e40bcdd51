"""Shared fixtures: the bundled real SegPC sample, and small generated SegPC folders for bad input."""
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from testutils import write_segpc_cell

REPO = Path(__file__).resolve().parents[1]
SEGPC_MINI = REPO / "datasets" / "segpc_mini" / "train"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def logging_restored():
    """Every logger's handlers, level and propagation as they were before the test. A tool's
    ``logging.basicConfig`` or Detectron2's ``setup_logger`` binds a handler to the stream the test
    captured, which is closed once the test ends: a later test's log line would print a logging error
    into its own captured output."""
    def state():
        names = [None, *logging.root.manager.loggerDict]
        return {name: logging.getLogger(name) for name in names}

    before = {name: (list(logger.handlers), logger.level, logger.propagate) for name, logger in state().items()}
    yield
    for name, logger in state().items():
        handlers, level, propagate = before.get(name, ([], logging.NOTSET, True))
        for handler in [h for h in logger.handlers if h not in handlers]:
            logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(scope="session")
def segpc_mini() -> Path:
    """The bundled real sample: 14 SegPC-2021 images, 90 cell masks."""
    return SEGPC_MINI


@pytest.fixture(scope="session")
def dsb2018_root() -> Path:
    root = SHARED_DATA / "dsb2018"
    if not root.is_dir():
        pytest.skip("DSB2018 is not beside this checkout (../shared/data/dsb2018)")
    return root


@pytest.fixture
def tiny_segpc(tmp_path) -> Path:
    """A small SegPC folder: images a (2 cells), b (1 cell), c (no masks). 120x160 pixels."""
    root = tmp_path / "segpc"
    (root / "x").mkdir(parents=True)
    (root / "y").mkdir()
    rng = np.random.default_rng(0)
    for image_id in "abc":
        cv2.imwrite(str(root / "x" / f"{image_id}.png"), rng.integers(0, 255, (120, 160, 3), np.uint8))
    write_segpc_cell(root / "y" / "a_1.png", (120, 160), (40, 40), 20, 8)
    write_segpc_cell(root / "y" / "a_2.png", (120, 160), (110, 70), 25, 10)
    write_segpc_cell(root / "y" / "b_1.png", (120, 160), (80, 60), 30, 12)
    return root


@pytest.fixture
def real_segpc_copy(tmp_path, segpc_mini) -> Path:
    """A writable copy of two real bundled images and their masks."""
    root = tmp_path / "real"
    for sub in ("x", "y"):
        (root / sub).mkdir(parents=True)
    for image_id in ("1997", "2009"):
        shutil.copy(segpc_mini / "x" / f"{image_id}.jpg", root / "x")
        for mask in (segpc_mini / "y").glob(f"{image_id}_*.png"):
            shutil.copy(mask, root / "y")
    return root



@pytest.fixture(scope="session")
def shared_segpc():
    """The reduced and Nikon SegPC-2021 sets beside this checkout (``make setup`` links them into
    datasets/); tests that need them skip without."""
    for name in ("segpc_lowres", "segpc_nikon"):
        if not (REPO / "datasets" / name).is_dir():
            pytest.skip(f"{name} is not in datasets/ (make setup links ../shared/data/{name})")
