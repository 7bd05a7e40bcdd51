"""Which of a model's classes are cells and nuclei, and the metadata that names them."""
from typing import Optional, Sequence, Tuple

from detectron2.config import CfgNode
from detectron2.data import Metadata, MetadataCatalog


def model_metadata(cfg: CfgNode, classes: Optional[str] = None) -> Metadata:
    """Metadata (``thing_classes``, colours when registered) of the model's classes: from ``classes``
    ("cell,nucleus") when given, else from ``DATASETS.TEST[0]``. The count must match the model's."""
    if classes:
        metadata = Metadata(name="predict", thing_classes=[c.strip() for c in classes.split(",")])
    elif len(cfg.DATASETS.TEST):
        metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        if not hasattr(metadata, "thing_classes"):
            raise ValueError(f"test dataset {cfg.DATASETS.TEST[0]!r} has no thing_classes; pass --classes")
    else:
        raise ValueError("the config sets no DATASETS.TEST: pass the class names with --classes")
    if len(metadata.thing_classes) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
        raise ValueError(f"classes {metadata.thing_classes} do not match MODEL.ROI_HEADS.NUM_CLASSES = "
                         f"{cfg.MODEL.ROI_HEADS.NUM_CLASSES}")
    return metadata


def cell_and_nucleus_classes(class_names: Sequence[str]) -> Tuple[int, Optional[int]]:
    """(cell class index, nucleus class index or None). The cell class is "cell", or the only class
    of a one-class model; the nucleus class is "nucleus" beside a cell class."""
    names = list(class_names)
    if "cell" in names:
        return names.index("cell"), names.index("nucleus") if "nucleus" in names else None
    if len(names) == 1:
        return 0, None
    raise ValueError(f"cannot tell which of the classes {names} is the cell: name it 'cell'")
