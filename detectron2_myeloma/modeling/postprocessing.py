"""Detector outputs at the requested resolution with each mask pasted into its own box only.

Detectron2's ``detector_postprocess`` pastes every mask into a full-size array: N x H x W booleans,
which for the dozens of cells of a 2560 px tile is hundreds of megabytes that are cropped again at once.
Here each mask is pasted into the pixels its box covers, by the same Detectron2 function and sampling
that its CPU path uses mask by mask, so the crops equal the full-size masks' non-empty parts.
"""
from typing import Any, Dict

from detectron2.layers.mask_ops import _do_paste_mask
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances

from ..structures import MaskCrop, MaskCrops

# The (N, 1, M, M) mask probabilities, carried through detector_postprocess under another name so that it
# rescales and filters the detections without pasting their masks.
_MASK_PROBS = "_mask_probs"


def detector_postprocess_crops(results: Instances, output_height: int, output_width: int,
                               mask_threshold: float = 0.5) -> Instances:
    """``detector_postprocess`` whose masks come out as ``pred_mask_crops`` (:class:`MaskCrops`,
    output pixels) instead of full-size ``pred_masks``."""
    if not results.has("pred_masks"):
        return detector_postprocess(results, output_height, output_width, mask_threshold)
    fields = results.get_fields()
    fields[_MASK_PROBS] = fields.pop("pred_masks")
    results = detector_postprocess(Instances(results.image_size, **fields), output_height, output_width)
    crops = []
    for probs, box in zip(results.get(_MASK_PROBS), results.pred_boxes.tensor):
        pasted, (rows, cols) = _do_paste_mask(probs[None], box[None], output_height, output_width, skip_empty=True)
        crop = MaskCrop.from_full((pasted[0] >= mask_threshold).cpu().numpy())
        crops.append(crop.shifted(int(rows.start), int(cols.start)))
    results.remove(_MASK_PROBS)
    results.pred_mask_crops = MaskCrops(crops)
    return results


def postprocess(results: Instances, inputs: Dict[str, Any], mask_threshold: float = 0.5) -> Instances:
    """One image's raw detections at the resolution its input asks for (``"height"`` / ``"width"``,
    else the model's input size), as ``GeneralizedRCNN`` does; with masks as crops where the input
    holds ``"mask_crops": True``."""
    height = inputs.get("height", results.image_size[0])
    width = inputs.get("width", results.image_size[1])
    process = detector_postprocess_crops if inputs.get("mask_crops", False) else detector_postprocess
    return process(results, height, width, mask_threshold)
