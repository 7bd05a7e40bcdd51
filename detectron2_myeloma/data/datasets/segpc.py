"""SegPC-2021 folders (``x/<id>.<ext>`` images, ``y/<id>_<k>.<ext>`` per-cell masks) -> dataset dicts."""
import logging
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from ..masks import annotation_from_mask, size_mismatch, mask_to_rle
from ..report import ConversionReport, DatasetError
from ..images import image_files, image_size, image_stem
from ..segpc_format import cell_and_nucleus, read_segpc_mask, split_mask_name

logger = logging.getLogger(__name__)

# Cells at a frame's edge may spill a little into the padding (polygons rasterised in the padded frame;
# at most 2.8% of a cell in segpc_lowres): such pixels are cut off, more is an error.
MAX_PADDING_SPILL = 0.05

# Which instances a SegPC dataset yields; "both" lists every cell, then its nucleus.
CATEGORY_SETS = {"cell": ("cell",), "nucleus": ("nucleus",), "both": ("cell", "nucleus")}


def segpc_thing_classes(categories: str) -> List[str]:
    if categories not in CATEGORY_SETS:
        raise ValueError(f"categories must be one of {sorted(CATEGORY_SETS)}, got {categories!r}")
    return list(CATEGORY_SETS[categories])


def _list_images(folder: str, strict: bool, report: ConversionReport) -> Dict[str, str]:
    """id -> path of every image in ``folder``; two files with the same id are an error."""
    found: Dict[str, str] = {}
    for path in image_files(folder):
        stem = image_stem(path)
        if stem in found:
            report.problem(path, f"duplicate id {stem!r} (also {os.path.basename(found[stem])})", strict)
            continue
        found[stem] = path
    return found


def segpc_microscope(image_id: str) -> str:
    """"nikon" or "olympus": SegPC-2021 numbers the 2560x1920 Nikon (MiMM_SBILab) frames below 1000
    and the 2040x1536 Olympus frames from 1000 up (every frame of segpc_nikon and segpc_mini agrees)."""
    return "nikon" if int(image_id) < 1000 else "olympus"


def load_segpc(
    root: str,
    categories: str = "cell",
    image_ids: Optional[Sequence[str]] = None,
    strict: bool = True,
    report: Optional[ConversionReport] = None,
    frame_aspect: Optional[float] = None,
    exclude_ids: Sequence[str] = (),
) -> List[dict]:
    """Read a SegPC-2021 split into Detectron2 dataset dicts with RLE masks.

    Args:
        root: folder holding ``x/`` and, except for a test split, ``y/``.
        categories: "cell" (nucleus U cytoplasm), "nucleus", or "both".
        image_ids: keep only these ids (fixed splits of one folder).
        exclude_ids: leave these ids out (images held out at another resolution; absent ids are fine).
        strict: raise :class:`DatasetError` on bad input; otherwise skip it and record why in ``report``.
        frame_aspect: the images are frames of this width / height pasted centred on a padded canvas
            (``segpc_lowres``: 4:3 frames on 512x512 squares). Each record then describes the frame
            only: ``"crop"`` holds its box ``[x0, y0, x1, y1]`` in file pixels, ``height``/``width`` and
            the masks are the frame's (a cell spilling more than ``MAX_PADDING_SPILL`` of its pixels
            into the padding is a problem; less is cut off).

    Every annotation carries ``segpc_instance`` ("<id>_<k>", shared by a cell and its nucleus), and
    every cell annotation carries ``nucleus`` (RLE of its own nucleus, absent if it has none), so that
    later stages can write nucleus/cytoplasm pairs.
    """
    classes = segpc_thing_classes(categories)
    report = report if report is not None else ConversionReport()
    x_dir, y_dir = os.path.join(root, "x"), os.path.join(root, "y")
    if not os.path.isdir(x_dir):
        raise DatasetError(x_dir, "SegPC image folder not found (expected <root>/x/<id>.<ext>)")
    all_images = _list_images(x_dir, strict, report)
    images = all_images
    if image_ids is not None:
        missing = sorted(set(image_ids) - set(all_images))
        if missing:
            raise DatasetError(x_dir, f"requested image ids not found: {', '.join(missing)}")
        images = {i: all_images[i] for i in image_ids}
    excluded = set(exclude_ids)
    images = {i: path for i, path in images.items() if i not in excluded}

    masks_of = defaultdict(list)
    if os.path.isdir(y_dir):
        for path in image_files(y_dir):
            try:
                image_id, k = split_mask_name(path)
            except DatasetError as err:
                report.problem(path, err.problem, strict)
                continue
            if image_id not in all_images:
                report.problem(path, f"mask has no image {image_id!r} in {x_dir}", strict)
            elif image_id in images:
                masks_of[image_id].append((k, path))

    dicts = []
    for image_id, image_path in tqdm(images.items(), desc="images", unit="image"):
        size = report.attempt(strict, image_size, image_path)
        if size is None:
            report.skip_masks(path for _, path in sorted(masks_of[image_id]))
            continue
        crop = frame_box(size, frame_aspect) if frame_aspect else None
        annotations = []
        for k, mask_path in sorted(masks_of[image_id]):
            annotations += _cell_annotations(mask_path, f"{image_id}_{k}", size, classes, strict, report, crop)
        record = {"file_name": image_path, "image_id": image_id, "height": size[0], "width": size[1],
                  "annotations": annotations}
        if crop is not None:
            record.update(crop=list(crop), height=crop[3] - crop[1], width=crop[2] - crop[0])
        report.add_image(dicts, record)
    return dicts


def frame_box(image_hw: Sequence[int], aspect: float) -> Tuple[int, int, int, int]:
    """``[x0, y0, x1, y1]`` of the centred frame of width / height ``aspect`` that fills an image along
    its longer relative side (the rest is padding)."""
    height, width = image_hw
    if width / height < aspect:  # padding above and below
        rows = round(width / aspect)
        top = (height - rows) // 2
        return 0, top, width, top + rows
    cols = round(height * aspect)
    left = (width - cols) // 2
    return left, 0, left + cols, height


def _cell_annotations(mask_path, key, image_hw, classes, strict, report, crop=None) -> List[dict]:
    mask = report.attempt(strict, read_segpc_mask, mask_path)
    if mask is None:
        return []
    if mask.shape != tuple(image_hw):
        report.problem(mask_path, size_mismatch(mask.shape, image_hw), strict)
        return []
    if crop is not None:
        x0, y0, x1, y1 = crop
        total = int((mask > 0).sum())
        outside = total - int((mask[y0:y1, x0:x1] > 0).sum())
        if outside > MAX_PADDING_SPILL * total:
            report.problem(mask_path, f"{outside} of the cell's {total} pixels lie in the padding outside "
                                      f"the frame {list(crop)}", strict)
            return []
        mask = mask[y0:y1, x0:x1]
    cell, nucleus = cell_and_nucleus(mask)
    if not cell.any():
        report.problem(mask_path, "mask has no foreground (no pixel is 20 or 40)", strict)
        return []
    cell_ann = annotation_from_mask(cell, classes.index("cell"), segpc_instance=key) \
        if "cell" in classes else None
    nucleus_ann = annotation_from_mask(nucleus, classes.index("nucleus"), segpc_instance=key) \
        if "nucleus" in classes else None
    if cell_ann is not None and nucleus.any():
        cell_ann["nucleus"] = mask_to_rle(nucleus)
    if "nucleus" in classes and nucleus_ann is None:
        report.skip(mask_path, "cell has no nucleus (no pixel is 40)")
    return [a for a in (cell_ann, nucleus_ann) if a is not None]
