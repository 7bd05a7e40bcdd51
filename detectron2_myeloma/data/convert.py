"""Any supported source -> validated COCO instances json, written atomically."""
import logging
import os
from typing import Optional, Tuple

from detectron2.data import MetadataCatalog

from ..utils.atomic import write_json_atomic
from .coco_io import dicts_to_coco, load_coco_rle, validate_coco
from .mask_folders import load_mask_folders
from .report import ConversionReport, DatasetError
from .segpc import load_segpc, segpc_thing_classes

logger = logging.getLogger(__name__)

FORMATS = ("segpc", "pptx", "coco", "masks")


def convert_to_coco(fmt: str, input_path: str, output: str, categories: str = "cell",
                    image_root: Optional[str] = None, strict: bool = True) -> Tuple[dict, ConversionReport]:
    """Read ``input_path`` in format ``fmt``, validate the COCO result with pycocotools, then write it.

    ``image_root``: for ``coco`` input, the folder its file names are relative to; for ``pptx``, where
    external images are matched (embedded pictures are extracted beside ``output`` otherwise). The written
    file names are relative to the folder of the images (SegPC ``x/``, the mask-folder root, the COCO
    image root, the extraction folder), which is what ``register_coco`` takes as its image root.
    Nothing is written when reading or validation fails.
    """
    report = ConversionReport()
    if not os.path.exists(input_path):
        raise DatasetError(input_path, "input not found")
    if fmt == "segpc":
        dicts = load_segpc(input_path, categories, strict=strict, report=report)
        classes, root = segpc_thing_classes(categories), os.path.join(input_path, "x")
    elif fmt == "masks":
        dicts = load_mask_folders(input_path, strict=strict, report=report)
        classes, root = ["nucleus"], input_path
    elif fmt == "coco":
        if image_root is None:
            raise ValueError("--image-root is required for --format coco")
        # A dataset name makes load_coco_json map category ids to 0..N-1 and record the class names.
        name = f"convert_to_coco:{os.path.abspath(input_path)}"
        dicts = load_coco_rle(input_path, image_root, name, strict=strict, report=report)
        classes, root = MetadataCatalog.get(name).thing_classes, image_root
    elif fmt == "pptx":
        from .pptx import load_pptx_dataset

        root = os.path.join(os.path.dirname(os.path.abspath(output)), "images")
        dicts = load_pptx_dataset(input_path, image_root, root, strict=strict, report=report)
        root = image_root or root
        classes = ["cell"]
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    coco = dicts_to_coco(dicts, classes, image_root=root)
    validate_coco(coco, output)
    write_json_atomic(coco, output)
    logger.info("wrote %s: %s", output, report.summary())
    return coco, report

