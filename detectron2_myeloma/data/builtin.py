"""Registration of this project's datasets in Detectron2's catalogs, in Detectron2's builtin style.

Datasets live under ``$DETECTRON2_MYELOMA_DATASETS`` (default ``./datasets``); see datasets/README.md.
Registration only stores loaders: nothing is read until a dataset is first used.
"""
import os
from typing import Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco_io import load_coco_rle
from .mask_folders import load_mask_folders
from .segpc import load_segpc, segpc_thing_classes

THING_COLORS = {"cell": (220, 20, 60), "nucleus": (30, 90, 255)}

# Fixed split of the bundled 14-image sample (val: 4 images, 26 of the 90 cells).
SEGPC_MINI_VAL_IDS = ("1998", "2011", "2034", "2048")
SEGPC_MINI_TRAIN_IDS = ("1991", "1997", "2001", "2005", "2009", "2032", "2042", "2044", "2045", "2050")


def _set_metadata(name: str, thing_classes: Sequence[str], evaluator_type: str, **extra) -> None:
    MetadataCatalog.get(name).set(
        thing_classes=list(thing_classes),
        thing_colors=[THING_COLORS.get(c, (0, 160, 0)) for c in thing_classes],
        evaluator_type=evaluator_type,
        **extra,
    )


def register_segpc(name: str, root: str, categories: str = "cell",
                   image_ids: Optional[Sequence[str]] = None) -> None:
    """A SegPC-2021 split (``root/x``, ``root/y``); evaluated by COCO metrics and the SegPC scorer."""
    classes = segpc_thing_classes(categories)
    ids = list(image_ids) if image_ids is not None else None
    DatasetCatalog.register(name, lambda: load_segpc(root, categories, ids))
    _set_metadata(name, classes, "segpc", segpc_root=root, image_root=os.path.join(root, "x"))


def register_coco(name: str, json_file: str, image_root: str) -> None:
    """A COCO instances json; masks become RLE, the project's extra annotation keys are kept."""
    DatasetCatalog.register(name, lambda: load_coco_rle(json_file, image_root, name))
    # thing_classes and the category id map are filled in by load_coco_json on first load.
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")


def register_mask_folders(name: str, root: str, thing_class: str = "nucleus") -> None:
    """Per-instance mask folders (``<id>/images/<id>.png`` + ``<id>/masks/*.png``)."""
    DatasetCatalog.register(name, lambda: load_mask_folders(root))
    _set_metadata(name, [thing_class], "coco", image_root=root)


def register_pptx(name: str, pptx_path: str, image_dir: Optional[str] = None,
                  extract_dir: Optional[str] = None) -> None:
    """MiMM_SBILab PowerPoint decks; embedded pictures are extracted to ``extract_dir`` on first load."""
    from .pptx import load_pptx_dataset

    extract_dir = extract_dir or os.path.join(os.path.dirname(os.path.abspath(pptx_path)),
                                              "extracted_images")
    DatasetCatalog.register(name, lambda: load_pptx_dataset(pptx_path, image_dir, extract_dir))
    _set_metadata(name, ["cell"], "segpc")


def register_all(root: str) -> None:
    """The builtin datasets. SegPC and DSB2018 names are always registered (a missing folder is
    reported when the dataset is used); ``mimm_sbilab`` only when its decks are present."""
    segpc = os.path.join(root, "segpc")
    for split in ("train", "val", "test"):
        register_segpc(f"segpc_{split}", os.path.join(segpc, split))
    mini = os.path.join(root, "segpc_mini", "train")
    register_segpc("segpc_mini_train", mini, image_ids=SEGPC_MINI_TRAIN_IDS)
    register_segpc("segpc_mini_val", mini, image_ids=SEGPC_MINI_VAL_IDS)
    for split in ("train", "val"):
        dsb = os.path.join(root, "dsb2018")
        register_coco(f"dsb2018_{split}", os.path.join(dsb, f"{split}.json"), os.path.join(dsb, split))
    mimm = os.path.join(root, "mimm_sbilab")
    if os.path.isdir(mimm):
        images = os.path.join(mimm, "images")
        register_pptx("mimm_sbilab", os.path.join(mimm, "annotations"),
                      image_dir=images if os.path.isdir(images) else None,
                      extract_dir=os.path.join(mimm, "extracted_images"))


if "segpc_mini_train" not in DatasetCatalog.list():
    register_all(os.path.expanduser(os.getenv("DETECTRON2_MYELOMA_DATASETS", "datasets")))
