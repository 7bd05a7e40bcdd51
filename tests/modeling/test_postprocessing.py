"""Masks pasted box by box equal Detectron2's full-size masks; Instances filter them like any field."""
import numpy as np
import pytest
import torch
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from detectron2_myeloma.modeling.postprocessing import detector_postprocess_crops, postprocess
from detectron2_myeloma.structures import CellDetections, MaskCrops


def raw_detections(count: int, seed: int = 0) -> Instances:
    """Raw detector outputs on a 160 x 200 model input: mask probabilities with soft edges, boxes that
    overhang the image, and one box the rescale leaves empty."""
    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(count, 2, generator=generator) * torch.tensor([200.0, 160.0]) - 10
    sides = torch.rand(count, 2, generator=generator) * 60 + 3
    boxes = torch.cat([corners, corners + sides], dim=1)
    boxes[0] = torch.tensor([250.0, 10, 260, 20])  # wholly outside: clipped to nothing
    probs = torch.sigmoid(torch.randn(count, 1, 28, 28, generator=generator) * 3)
    return Instances((160, 200), pred_boxes=Boxes(boxes), scores=torch.rand(count, generator=generator),
                     pred_classes=torch.randint(0, 2, (count,), generator=generator), pred_masks=probs)


@pytest.mark.parametrize("output", [(160, 200), (480, 600), (1001, 1253)])
def test_box_by_box_masks_equal_detectron2_full_size_masks(output):
    full = detector_postprocess(raw_detections(25), *output)  # (each rescales its boxes in place)
    crops = detector_postprocess_crops(raw_detections(25), *output)
    assert len(full) == len(crops) == 24 and not crops.has("pred_masks")
    assert torch.equal(full.pred_boxes.tensor, crops.pred_boxes.tensor) and torch.equal(full.scores, crops.scores)
    for mask, crop in zip(full.pred_masks.numpy(), crops.pred_mask_crops):
        canvas = np.zeros(output, bool)
        crop.paste(canvas)
        assert np.array_equal(canvas, mask)
        assert crop.mask.size == 0 or (crop.mask.any(axis=1)[[0, -1]].all() and crop.mask.any(axis=0)[[0, -1]].all())


def test_the_input_chooses_crops_or_full_masks_and_its_output_size():
    assert postprocess(raw_detections(8, seed=1), {}).pred_masks.shape == (7, 160, 200)
    out = postprocess(raw_detections(8, seed=1), {"height": 320, "width": 400, "mask_crops": True})
    assert out.image_size == (320, 400) and len(out.pred_mask_crops) == 7


def test_instances_index_mask_crops_as_their_other_fields():
    out = detector_postprocess_crops(raw_detections(12, seed=2), 320, 400)
    keep = out.scores > 0.5
    for subset, index in ((out[keep], torch.nonzero(keep).flatten()), (out[3], torch.tensor([3])),
                          (out[2:9:3], torch.arange(2, 9, 3)), (out[torch.tensor([5, 1])], torch.tensor([5, 1]))):
        assert isinstance(subset.pred_mask_crops, MaskCrops)
        assert [c.mask.tolist() for c in subset.pred_mask_crops] == [out.pred_mask_crops.crops[i].mask.tolist()
                                                                   for i in index.tolist()]
    detections = CellDetections.from_instances(out[keep])
    assert len(detections) == int(keep.sum()) and [m.y for m in detections.masks] == [
        out.pred_mask_crops.crops[i].y for i in torch.nonzero(keep).flatten().tolist()]
