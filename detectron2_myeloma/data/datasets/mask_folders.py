"""Per-instance mask folders (the DSB2018 stage-1 layout) -> dataset dicts.

``<root>/<id>/images/<id>.png`` is the image and every file in ``<root>/<id>/masks/`` is one instance
(non-zero pixels = the object).
"""
import os
from typing import List, Optional

from tqdm import tqdm

from ..masks import annotation_from_mask, size_mismatch
from ..report import ConversionReport, DatasetError
from ..images import IMAGE_EXTENSIONS, image_files, image_size, read_mask


def load_mask_folders(root: str, category_id: int = 0, strict: bool = True,
                      report: Optional[ConversionReport] = None) -> List[dict]:
    """Read every ``<root>/<id>/`` sample; an image without a ``masks/`` folder has no instances."""
    report = report if report is not None else ConversionReport()
    if not os.path.isdir(root):
        raise DatasetError(root, "mask-folder dataset root not found")
    dicts = []
    samples = sorted(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name)))
    for image_id in tqdm(samples, desc="images", unit="image"):
        sample = os.path.join(root, image_id)
        mask_dir = os.path.join(sample, "masks")
        mask_paths = image_files(mask_dir) if os.path.isdir(mask_dir) else []
        image_path = _find_image(sample, image_id)
        if image_path is None:
            report.problem(sample, f"no image {image_id}.<ext> in {sample}/images", strict)
            report.skip_masks(mask_paths)
            continue
        size = report.attempt(strict, image_size, image_path)
        if size is None:
            report.skip_masks(mask_paths)
            continue
        annotations = []
        for mask_path in mask_paths:
            ann = _instance(mask_path, size, category_id, strict, report)
            if ann is not None:
                annotations.append(ann)
        report.add_image(dicts, {"file_name": image_path, "image_id": image_id, "height": size[0],
                                 "width": size[1], "annotations": annotations})
    return dicts


def _find_image(sample: str, image_id: str) -> Optional[str]:
    for ext in IMAGE_EXTENSIONS:
        path = os.path.join(sample, "images", image_id + ext)
        if os.path.isfile(path):
            return path
    return None


def _instance(mask_path, image_hw, category_id, strict, report) -> Optional[dict]:
    mask = report.attempt(strict, read_mask, mask_path)
    if mask is None:
        return None
    if mask.shape != tuple(image_hw):
        report.problem(mask_path, size_mismatch(mask.shape, image_hw), strict)
        return None
    ann = annotation_from_mask(mask > 0, category_id, source_mask=os.path.basename(mask_path))
    if ann is None:
        report.problem(mask_path, "mask has no foreground", strict)
    return ann
