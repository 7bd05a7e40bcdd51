"""Helpers of the classifier tests: real bundled SegPC images turned into crop folders, small configs."""
from pathlib import Path
from typing import Dict, List

from fvcore.common.config import CfgNode

from detectron2_myeloma.classifier.config import get_classifier_cfg
from detectron2_myeloma.classifier.dataset import build_crop_dataset
from detectron2_myeloma.classifier.negatives import CellSizePrior

SEGPC_MINI = Path(__file__).resolve().parents[2] / "datasets" / "segpc_mini" / "train"
CROP_SIZE = 64


def make_crops(records: Dict[str, dict], train: List[str], val: List[str], output: Path) -> Path:
    """64 px crops (margin 0.15, stain-heuristic negatives) of the given image ids."""
    splits = {"train": [records[i] for i in train], "val": [records[i] for i in val]}
    prior = CellSizePrior.from_dataset(splits["train"])
    build_crop_dataset(splits, str(output), margin=0.15, size=CROP_SIZE, prior=prior)
    return output


def small_cfg(name: str = "tf_efficientnet_lite0", **overrides) -> CfgNode:
    """Classifier defaults at 64 px on cpu; ``overrides`` as {"MODEL.FREEZE_AT": 3}."""
    cfg = get_classifier_cfg()
    cfg.merge_from_list(["MODEL.NAME", name, "INPUT.SIZE", CROP_SIZE, "DEVICE", "cpu",
                         *[item for pair in overrides.items() for item in pair]])
    return cfg
