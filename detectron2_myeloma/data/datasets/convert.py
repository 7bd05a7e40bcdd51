"""Any supported source -> validated COCO instances json, written atomically."""
import os
from typing import List, Optional, Tuple

from detectron2.data import MetadataCatalog

from ...utils.atomic import check_output_file, write_json_atomic
from ...utils.errors import InputError
from .coco_io import dicts_to_coco, load_coco_rle, validate_coco
from ..images import IMAGE_EXTENSIONS
from .mask_folders import load_mask_folders
from ..report import ConversionReport, DatasetError
from .segpc import load_segpc, segpc_thing_classes

FORMATS = ("segpc", "pptx", "coco", "masks")


def convert_to_coco(fmt: str, input_path: str, output: str, categories: str = "cell",
                    image_root: Optional[str] = None, strict: bool = True) -> Tuple[dict, ConversionReport]:
    """Read ``input_path`` in format ``fmt``, validate the COCO result with pycocotools, then write it.

    ``image_root``: for ``coco`` input, the folder its file names are relative to; for ``pptx``, where
    external images are matched (embedded pictures are extracted beside ``output`` otherwise). The written
    file names are relative to the folder of the images (SegPC ``x/``, the mask-folder root, the COCO
    image root, the extraction folder), which is what ``register_coco`` takes as its image root.
    Nothing is written when reading or validation fails, or when no image is found (InputError): the
    pictures extracted from decks are removed again, unless they existed before.
    """
    check_output_file(output)
    if not os.path.exists(input_path):
        raise DatasetError(input_path, "input not found")
    created: List[str] = []
    try:
        return _convert(fmt, input_path, output, categories, image_root, strict, created)
    except BaseException:
        if created:
            from .pptx import remove_created

            remove_created(created)
        raise


def _convert(fmt: str, input_path: str, output: str, categories: str, image_root: Optional[str],
             strict: bool, created: List[str]) -> Tuple[dict, ConversionReport]:
    report = ConversionReport()
    where = input_path  # what an empty result names, with what was expected there
    if fmt == "segpc":
        dicts = load_segpc(input_path, categories, strict=strict, report=report)
        classes, root = segpc_thing_classes(categories), os.path.join(input_path, "x")
        where, expected = root, f"<id>.<ext> images, <ext> one of {', '.join(IMAGE_EXTENSIONS)}"
    elif fmt == "masks":
        dicts = load_mask_folders(input_path, strict=strict, report=report)
        classes, root = ["nucleus"], input_path
        expected = "<id>/images/<id>.<ext> sample folders"
    elif fmt == "coco":
        if image_root is None:
            raise InputError("--image-root is required with --format coco: the folder the json's file "
                             "names are relative to")
        if not os.path.isdir(image_root):
            raise DatasetError(image_root, "image root folder not found")
        # A dataset name makes load_coco_json map category ids to 0..N-1 and record the class names.
        name = f"convert_to_coco:{os.path.abspath(input_path)}"
        dicts = load_coco_rle(input_path, image_root, name, strict=strict, report=report)
        classes, root = MetadataCatalog.get(name).thing_classes, image_root
        expected = f"images listed under \"images\", found in {image_root}"
    elif fmt == "pptx":
        from .pptx import load_pptx_dataset

        root = image_root or os.path.join(os.path.dirname(os.path.abspath(output)), "images")
        dicts = load_pptx_dataset(input_path, image_root, root, strict=strict, report=report, created=created)
        classes, expected = ["cell"], "slides with a picture of the cells"
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if not dicts:
        reasons = ", ".join(f"{n} x {reason}" for reason, n in report.skipped_by_reason().most_common())
        raise DatasetError(where, f"no image to convert (expected {expected})"
                                  + (f"; skipped {reasons}" if reasons else ""))
    coco = dicts_to_coco(dicts, classes, image_root=root)
    validate_coco(coco, output)
    write_json_atomic(coco, output)
    return coco, report
