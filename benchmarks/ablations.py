"""The models compared everywhere (benchmarks, the seed-repeated comparison): plain Mask R-CNN, each
R-Mask R-CNN part switched on alone over it, and R-Mask R-CNN with all of them.

Each entry is ``(config stem, overrides)``; every dataset folder under ``configs/`` has the two stems
``mask_rcnn_lite2_fpn`` (all ``MODEL.RMASK`` switches off) and ``rmask_rcnn_lite2_fpn`` (all on), so one
list serves every dataset and the ablations differ from the baseline only in the keys listed
(``MODEL.RMASK`` switches and the mask head's name).
"""
from typing import Any, Dict, List, NamedTuple


class Variant(NamedTuple):
    name: str  # shown in tables
    config: str  # file stem inside a configs/<dataset>/ folder
    overrides: List[Any]  # KEY VALUE pairs over that config


BASELINE_CONFIG = "mask_rcnn_lite2_fpn"
RMASK_CONFIG = "rmask_rcnn_lite2_fpn"

VARIANTS: Dict[str, Variant] = {
    "baseline": Variant("Mask R-CNN (baseline)", BASELINE_CONFIG, []),
    "bottom_up": Variant("+ bottom-up path", BASELINE_CONFIG, ["MODEL.RMASK.BOTTOM_UP_PATH", True]),
    "attention": Variant("+ attention (FPN)", BASELINE_CONFIG, ["MODEL.RMASK.FPN_ATTENTION", "CA-SA"]),
    "bottom_up_attention": Variant(
        "+ bottom-up path + attention", BASELINE_CONFIG,
        ["MODEL.RMASK.BOTTOM_UP_PATH", True, "MODEL.RMASK.FPN_ATTENTION", "CA-SA",
         "MODEL.RMASK.BU_ATTENTION", "CA-SA"]),
    "adaptive_pooling": Variant("+ adaptive pooling", BASELINE_CONFIG,
                                ["MODEL.ROI_MASK_HEAD.NAME", "AdaptiveFusionMaskHead",
                                 "MODEL.ROI_MASK_HEAD.POOLER_TYPE", ""]),
    "rmask": Variant("R-Mask R-CNN", RMASK_CONFIG, []),
}
