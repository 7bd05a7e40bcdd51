"""Detector outputs at the requested resolution with each mask pasted into its own box only.

Detectron2's ``detector_postprocess`` pastes every mask into a full-size array: N x H x W booleans,
which for the dozens of cells of a 2560 px tile is hundreds of megabytes that are cropped again at once.
Here each mask is pasted into the pixels its box covers, by the same Detectron2 function and sampling
that its CPU path uses mask by mask, so the crops equal the full-size masks' non-empty parts.
"""
from typing import Any, Dict

from detectron2.layers.mask_ops import _do_paste_mask
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances, ROIMasks

from ..structures import NUCLEUS_CROPS, NUCLEUS_MASKS, MaskCrop, MaskCrops

# The (N, 1, M, M) mask probabilities, carried through detector_postprocess under another name so that it
# rescales and filters the detections without pasting their masks.
_MASK_PROBS = "_mask_probs"


def detector_postprocess_crops(results: Instances, output_height: int, output_width: int,
                               mask_threshold: float = 0.5) -> Instances:
    """``detector_postprocess`` whose masks come out as ``pred_mask_crops`` (:class:`MaskCrops`,
    output pixels) instead of full-size ``pred_masks``; nucleus masks, where the model predicts them,
    as ``pred_nucleus_crops``, each cut to its own cell.

    Args:
        results: one image's raw detections at the model input's size: ``pred_boxes`` (N, 4) XYXY,
            ``pred_masks`` and, where predicted, ``pred_nucleus_masks``: (N, 1, M, M) probabilities.
        output_height, output_width: the output size H x W.
        mask_threshold: probabilities at or above it are in the mask.

    Returns:
        The detections whose box is not empty at H x W, boxes scaled and clipped to it, each mask a
        :class:`MaskCrop`: an h x w bool array placed in output pixels. Without ``pred_masks``,
        ``detector_postprocess``'s result.
    """
    if not results.has("pred_masks"):
        return detector_postprocess(results, output_height, output_width, mask_threshold)
    fields = results.get_fields()
    fields[_MASK_PROBS] = fields.pop("pred_masks")
    results = detector_postprocess(Instances(results.image_size, **fields), output_height, output_width)
    nucleus_probs = results.get(NUCLEUS_MASKS) if results.has(NUCLEUS_MASKS) else None
    crops, nuclei = [], []
    for i, (probs, box) in enumerate(zip(results.get(_MASK_PROBS), results.pred_boxes.tensor)):
        pasted, (rows, cols) = _do_paste_mask(probs[None], box[None], output_height, output_width, skip_empty=True)
        cell = (pasted[0] >= mask_threshold).cpu().numpy()
        crops.append(MaskCrop.from_full(cell).shifted(int(rows.start), int(cols.start)))
        if nucleus_probs is not None:  # the same box gives the same window
            pasted, _ = _do_paste_mask(nucleus_probs[i][None], box[None], output_height, output_width,
                                       skip_empty=True)
            nucleus = (pasted[0] >= mask_threshold).cpu().numpy() & cell
            nuclei.append(MaskCrop.from_full(nucleus).shifted(int(rows.start), int(cols.start)))
    results.remove(_MASK_PROBS)
    results.pred_mask_crops = MaskCrops(crops)
    if nucleus_probs is not None:
        results.remove(NUCLEUS_MASKS)
        results.set(NUCLEUS_CROPS, MaskCrops(nuclei))
    return results


def detector_postprocess_nuclei(results: Instances, output_height: int, output_width: int,
                                mask_threshold: float = 0.5) -> Instances:
    """``detector_postprocess``, with ``pred_nucleus_masks`` pasted to full size as ``pred_masks`` are,
    each cut to its own cell: (N, 1, M, M) probabilities at the model input's size -> (N, H, W) bool at
    ``output_height`` x ``output_width``, for the detections whose box is not empty there."""
    results = detector_postprocess(results, output_height, output_width, mask_threshold)
    if results.has(NUCLEUS_MASKS) and results.has("pred_masks"):
        nuclei = ROIMasks(results.get(NUCLEUS_MASKS)[:, 0]).to_bitmasks(
            results.pred_boxes, output_height, output_width, mask_threshold).tensor
        results.set(NUCLEUS_MASKS, nuclei & results.pred_masks)
    return results


def postprocess(results: Instances, inputs: Dict[str, Any], mask_threshold: float = 0.5) -> Instances:
    """One image's raw detections at the resolution its input asks for (``"height"`` / ``"width"``,
    else the model's input size), as ``GeneralizedRCNN`` does; with masks as crops where the input
    holds ``"mask_crops": True``. ``results``: as :func:`detector_postprocess_crops` takes them; the masks
    come out as it or :func:`detector_postprocess_nuclei` gives them."""
    height = inputs.get("height", results.image_size[0])
    width = inputs.get("width", results.image_size[1])
    process = detector_postprocess_crops if inputs.get("mask_crops", False) else detector_postprocess_nuclei
    return process(results, height, width, mask_threshold)
