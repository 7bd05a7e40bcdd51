"""COCO instances json: read any COCO file into RLE dataset dicts, and write dataset dicts back as
validated COCO json, atomically (a failed conversion leaves no file behind)."""
import contextlib
import io
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import pycocotools.mask as mask_util
from detectron2.data.datasets import load_coco_json
from detectron2.structures import BoxMode
from pycocotools.coco import COCO
from tqdm import tqdm

from ..masks import rle_area
from ..images import image_size
from ..report import ConversionReport, DatasetError

# Annotation keys this project adds (links between a cell and its nucleus, provenance); kept in COCO json.
EXTRA_ANNOTATION_KEYS = ("segpc_instance", "nucleus", "source_shape", "source_mask")


def load_coco_rle(json_file: str, image_root: str, dataset_name: str, strict: bool = True, report: Optional[ConversionReport] = None) -> List[dict]:
    """Detectron2's ``load_coco_json`` with every mask (polygon or RLE) turned into compressed RLE,
    and every image checked to exist. Category ids become 0..N-1; ``dataset_name``'s metadata gets the
    class names."""
    report = report if report is not None else ConversionReport()
    if not os.path.isfile(json_file):
        raise DatasetError(json_file, "COCO json not found")
    try:
        dicts = load_coco_json(json_file, image_root, dataset_name,
                               extra_annotation_keys=list(EXTRA_ANNOTATION_KEYS))
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as err:
        raise DatasetError(json_file, f"not a valid COCO instances file ({type(err).__name__}: {err})")
    kept = []
    for record in tqdm(dicts, desc="images", unit="image"):
        problem = _image_problem(record, json_file)
        if problem:
            report.problem(record["file_name"], problem, strict)
            report.skip_masks(f"{record['file_name']} annotation {k}"
                              for k in range(1, len(record["annotations"]) + 1))
            continue
        for ann in record["annotations"]:
            ann["segmentation"] = _to_rle(ann.get("segmentation"), record["height"], record["width"])
        kept.append(record)
        report.images += 1
        report.instances += len(record["annotations"])
    return kept


def _image_problem(record: dict, json_file: str) -> Optional[str]:
    """Why an image the json lists cannot be used (missing, unreadable, not the size the json gives),
    or None; each image is decoded whole once (:func:`~.images.image_size`)."""
    if not os.path.isfile(record["file_name"]):
        return f"image listed in {json_file} not found"
    try:
        size = image_size(record["file_name"])
    except DatasetError as err:
        return err.problem
    if None not in (record.get("height"), record.get("width")) and size != (record["height"], record["width"]):
        return f"image is {size[1]}x{size[0]} but {json_file} gives {record['width']}x{record['height']}"
    return None


def _to_rle(segm: Any, height: int, width: int) -> Dict[str, Any]:
    if isinstance(segm, list):  # polygons
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width))
    elif isinstance(segm, dict) and isinstance(segm["counts"], list):  # uncompressed RLE
        rle = mask_util.frPyObjects(segm, height, width)
    else:
        rle = dict(segm)
    if isinstance(rle["counts"], bytes):
        rle["counts"] = rle["counts"].decode("ascii")
    return rle


def dicts_to_coco(dicts: Sequence[dict], thing_classes: Sequence[str],
                  image_root: Optional[str] = None) -> Dict[str, Any]:
    """COCO instances json (category ids 1..N, RLE masks) of Detectron2 dataset dicts.

    ``file_name`` is written relative to ``image_root`` when given (what ``register_coco_instances``
    then takes as its image root), else as it is.
    """
    images, annotations = [], []
    for image_id, record in enumerate(dicts, start=1):
        file_name = record["file_name"]
        if image_root is not None:
            file_name = os.path.relpath(file_name, image_root)
        images.append({"id": image_id, "file_name": file_name, "height": record["height"],
                       "width": record["width"], "name": str(record["image_id"])})
        for ann in record["annotations"]:
            rle = _to_rle(ann["segmentation"], record["height"], record["width"])
            bbox = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYWH_ABS)
            coco_ann = {"id": len(annotations) + 1, "image_id": image_id,
                        "category_id": ann["category_id"] + 1, "segmentation": rle,
                        "area": rle_area(rle), "bbox": [float(v) for v in bbox],
                        "iscrowd": int(ann.get("iscrowd", 0))}
            coco_ann.update({k: ann[k] for k in EXTRA_ANNOTATION_KEYS if k in ann})
            annotations.append(coco_ann)
    categories = [{"id": i + 1, "name": name, "supercategory": "cell"}
                  for i, name in enumerate(thing_classes)]
    return {"info": {"description": "converted by detectron2_myeloma"}, "images": images,
            "annotations": annotations, "categories": categories}


def validate_coco(coco: Dict[str, Any], source: str) -> None:
    """Raise DatasetError (naming ``source``) unless pycocotools indexes ``coco`` and every mask matches
    its image size, is non-empty and lies inside its bbox."""
    api = COCO()
    api.dataset = coco
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
            api.createIndex()
    except (KeyError, TypeError) as err:
        raise DatasetError(source, f"pycocotools cannot index the result ({err!r})")
    if len(api.imgs) != len(coco["images"]):
        raise DatasetError(source, "duplicate image ids")
    category_ids = set(api.cats)
    for ann in coco["annotations"]:
        image = api.imgs.get(ann["image_id"])
        where = f"annotation {ann['id']} (image {image['file_name'] if image else ann['image_id']})"
        if image is None:
            raise DatasetError(source, f"{where}: unknown image id")
        if ann["category_id"] not in category_ids:
            raise DatasetError(source, f"{where}: unknown category id {ann['category_id']}")
        if list(ann["segmentation"]["size"]) != [image["height"], image["width"]]:
            raise DatasetError(source, f"{where}: mask size {ann['segmentation']['size']} is not the "
                                       f"image's {[image['height'], image['width']]}")
        if ann["area"] <= 0:
            raise DatasetError(source, f"{where}: empty mask")
        x, y, w, h = ann["bbox"]
        if x < 0 or y < 0 or x + w > image["width"] + 1e-6 or y + h > image["height"] + 1e-6:
            raise DatasetError(source, f"{where}: bbox {ann['bbox']} outside the image")
        decoded = api.annToMask(ann)
        if int(decoded.sum()) != int(ann["area"]):
            raise DatasetError(source, f"{where}: area {ann['area']} disagrees with its mask")
