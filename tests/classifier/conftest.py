"""Real bundled SegPC images and a small crop folder built from them, shared by the classifier tests."""
from pathlib import Path
from typing import Dict

import pytest
from classifier_testutils import SEGPC_MINI, make_crops
from testutils import single_torch_thread

from detectron2_myeloma.classifier.negatives import CellSizePrior
from detectron2_myeloma.data.datasets.segpc import load_segpc


@pytest.fixture(scope="session")
def segpc_records() -> Dict[str, dict]:
    """Dataset dicts of five real bundled images (1991: 12 cells, 2042: 9, 2050: 8, 2048: 8, 2011: 9)."""
    records = load_segpc(str(SEGPC_MINI), image_ids=["1991", "2042", "2050", "2048", "2011"])
    return {r["image_id"]: r for r in records}


@pytest.fixture(scope="session")
def prior(segpc_records) -> CellSizePrior:
    """The size prior of all five images."""
    return CellSizePrior.from_dataset(list(segpc_records.values()))


@pytest.fixture(scope="session")
def small_crops(segpc_records, tmp_path_factory) -> Path:
    """64 px crops: train from images 1991 and 2042, val from 2048 (stain-heuristic negatives)."""
    return make_crops(segpc_records, ["1991", "2042"], ["2048"], tmp_path_factory.mktemp("crops"))


one_torch_thread = pytest.fixture(autouse=True)(single_torch_thread)
