"""Registration of this project's datasets in Detectron2's catalogs, in Detectron2's builtin style.

Datasets live under ``$DETECTRON2_MYELOMA_DATASETS`` (default ``./datasets``); see datasets/README.md.
Registration only stores loaders: nothing is read until a dataset is first used.
"""
import os
from typing import Callable, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco_io import load_coco_rle
from .mask_folders import load_mask_folders
from .segpc import load_segpc, segpc_microscope, segpc_thing_classes

THING_COLORS = {"cell": (220, 20, 60), "nucleus": (30, 90, 255)}

# Fixed split of the bundled 14-image sample (val: 4 images, 26 of the 90 cells).
SEGPC_MINI_VAL_IDS = ("1998", "2011", "2034", "2048")
SEGPC_MINI_TRAIN_IDS = ("1991", "1997", "2001", "2005", "2009", "2032", "2042", "2044", "2045", "2050")
# Full-size Nikon frames held out for measuring (4 of the 15, 18 of the 61 cells; one per id series and
# one more from the largest), chosen once.
SEGPC_NIKON_VAL_IDS = ("108", "114", "202", "303")
# Full-size frames no shipped model may see at any resolution: segpc_lowres holds reduced copies of them.
FULL_SIZE_VAL_IDS = SEGPC_MINI_VAL_IDS + SEGPC_NIKON_VAL_IDS
# segpc_lowres frames are 4:3 pictures centred on padded 512x512 squares (see the shared data README).
LOWRES_FRAME_ASPECT = 4 / 3
# Median equivalent cell diameter in pixels (data.statistics.median_cell_diameter; checked by
# tests/data/test_builtin.py): the physical scale of each source.
CELL_DIAMETERS = {"segpc_mini": 319.9, "segpc_nikon": 319.6, "segpc_lowres": 79.4}
# segpc_lowres mixes both microscopes, reduced 4x (Olympus) or 5x (Nikon): each record gets its own
# microscope's median, measured on segpc_lowres_train.
LOWRES_CELL_DIAMETERS = {"olympus": 79.8, "nikon": 66.7}
# Frame sizes (height, width) whose cell scale is known: what inference assumes without --cell-diameter.
FRAME_CELL_DIAMETERS = {(1536, 2040): CELL_DIAMETERS["segpc_mini"], (1920, 2560): CELL_DIAMETERS["segpc_nikon"],
                        (512, 512): CELL_DIAMETERS["segpc_lowres"], (384, 512): CELL_DIAMETERS["segpc_lowres"]}


def _set_metadata(name: str, thing_classes: Sequence[str], evaluator_type: str, **extra) -> None:
    MetadataCatalog.get(name).set(
        thing_classes=list(thing_classes),
        thing_colors=[THING_COLORS.get(c, (0, 160, 0)) for c in thing_classes],
        evaluator_type=evaluator_type,
        **extra,
    )


def register_segpc(name: str, root: str, categories: str = "cell",
                   image_ids: Optional[Sequence[str]] = None, exclude_ids: Sequence[str] = (),
                   frame_aspect: Optional[float] = None, cell_diameter: Optional[float] = None,
                   record_diameter: Optional[Callable[[str], float]] = None,
                   microscope: Optional[str] = None) -> None:
    """A SegPC-2021 split (``root/x``, ``root/y``); evaluated by COCO metrics and the SegPC scorer.
    ``image_ids`` / ``exclude_ids`` keep or drop ids, ``frame_aspect`` crops padding away
    (:func:`~.segpc.load_segpc`), ``cell_diameter`` (median, pixels) goes into the metadata and into
    every record (``INPUT.CELL_DIAMETER`` resizes by it), unless ``record_diameter`` gives a record's
    own from its image id; ``microscope`` keeps the frames of one (:func:`~.segpc.segpc_microscope`)."""
    classes = segpc_thing_classes(categories)
    ids = list(image_ids) if image_ids is not None else None

    def load() -> List[dict]:
        records = load_segpc(root, categories, ids, frame_aspect=frame_aspect, exclude_ids=tuple(exclude_ids))
        if microscope is not None:
            records = [r for r in records if segpc_microscope(r["image_id"]) == microscope]
        if cell_diameter is not None:
            for record in records:
                record["cell_diameter"] = (record_diameter(record["image_id"]) if record_diameter
                                           else cell_diameter)
        return records

    DatasetCatalog.register(name, load)
    extra = {"cell_diameter": cell_diameter} if cell_diameter is not None else {}
    _set_metadata(name, classes, "segpc", segpc_root=root, image_root=os.path.join(root, "x"), **extra)


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
    mini_scale = {"cell_diameter": CELL_DIAMETERS["segpc_mini"]}
    register_segpc("segpc_mini_train", mini, image_ids=SEGPC_MINI_TRAIN_IDS, **mini_scale)
    register_segpc("segpc_mini_val", mini, image_ids=SEGPC_MINI_VAL_IDS, **mini_scale)
    lowres = os.path.join(root, "segpc_lowres")
    lowres_frames = {"frame_aspect": LOWRES_FRAME_ASPECT, "cell_diameter": CELL_DIAMETERS["segpc_lowres"],
                     "record_diameter": lambda image_id: LOWRES_CELL_DIAMETERS[segpc_microscope(image_id)]}
    for split in ("train", "val"):
        register_segpc(f"segpc_lowres_{split}", os.path.join(lowres, split), **lowres_frames)
    for microscope in ("olympus", "nikon"):  # the reduced val split per microscope, for reports
        register_segpc(f"segpc_lowres_val_{microscope}", os.path.join(lowres, "val"), microscope=microscope,
                       **lowres_frames)
    register_segpc("segpc_lowres_train_fit", os.path.join(lowres, "train"), exclude_ids=FULL_SIZE_VAL_IDS,
                   **lowres_frames)
    nikon = os.path.join(root, "segpc_nikon", "train")
    nikon_scale = {"cell_diameter": CELL_DIAMETERS["segpc_nikon"]}
    register_segpc("segpc_nikon_train", nikon, **nikon_scale)
    register_segpc("segpc_nikon_fit", nikon, exclude_ids=SEGPC_NIKON_VAL_IDS, **nikon_scale)
    register_segpc("segpc_nikon_val", nikon, image_ids=SEGPC_NIKON_VAL_IDS, **nikon_scale)
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
