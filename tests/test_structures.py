"""CellDetections: masks kept as crops must give the same answers as full-size masks."""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.structures import Boxes, Instances

from detectron2_myeloma.evaluation.submission import pair_cells_with_nuclei
from detectron2_myeloma.structures import CellDetections, MaskCrop

H, W = 40, 30


def random_masks(seed: int, n: int = 6) -> np.ndarray:
    """Blobs of random rectangles and noise, including ones that touch the image's edges (a run down the
    last row that goes on at the top of the next column) and an empty mask."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, H, W), dtype=bool)
    for m in masks[:-1]:
        for _ in range(3):
            y0, x0 = rng.integers(0, H - 2), rng.integers(0, W - 2)
            m[y0:y0 + rng.integers(2, H), x0:x0 + rng.integers(2, 10)] = True
        m ^= rng.random((H, W)) < 0.05
    masks[0, :, 3:6] = True  # full-height columns: runs continue across columns
    return masks


@pytest.mark.parametrize("seed", range(5))
def test_rle_from_a_crop_equals_pycocotools_on_the_full_mask(seed):
    for full in random_masks(seed):
        expected = mask_util.encode(np.asfortranarray(full.astype(np.uint8)))
        got = MaskCrop.from_full(full).rle((H, W))
        assert got["size"] == expected["size"]
        assert got["counts"] == expected["counts"]
        assert np.array_equal(mask_util.decode(got).astype(bool), full)


def make_instances(masks: np.ndarray, classes) -> Instances:
    n = len(masks)
    return Instances((H, W), pred_boxes=Boxes(torch.rand(n, 4) * 10), pred_classes=torch.tensor(classes),
                     scores=torch.linspace(0.9, 0.5, n), pred_masks=torch.from_numpy(masks),
                     pred_cell_labels=torch.tensor([1, 0] * (n // 2) + [1] * (n % 2)),
                     pred_cell_probs=torch.rand(n, 2))


def test_crops_keep_every_pixel_and_field():
    masks = random_masks(7)
    instances = make_instances(masks, [0, 1, 0, 1, 0, 1])
    detections = CellDetections.from_instances(instances)
    assert len(detections) == 6
    for i in range(6):
        assert np.array_equal(detections.union_mask([i]), masks[i])
        assert detections.masks[i].area == masks[i].sum()
    assert np.allclose(detections.probs, instances.pred_cell_probs[:, 1].numpy())
    assert np.array_equal(detections.labels, instances.pred_cell_labels.numpy())
    moved = detections.shifted(100, 200, (500, 500))
    assert moved.boxes[0, 0] == pytest.approx(detections.boxes[0, 0] + 200)
    assert (moved.masks[1].y, moved.masks[1].x) == (detections.masks[1].y + 100, detections.masks[1].x + 200)
    both = CellDetections.cat([detections.subset([0, 1]), detections.subset([5])], (H, W))
    assert both.classes.tolist() == [0, 1, 1] and both.labels.tolist() == detections.labels[[0, 1, 5]].tolist()


@pytest.mark.parametrize("seed", range(4))
def test_nucleus_matching_on_crops_is_the_full_mask_rule(seed):
    """Against the rule computed on full-size masks: best |nucleus & cell| / |nucleus|, at least 0.5."""
    masks = random_masks(seed, n=8)
    classes = [0, 1, 0, 1, 1, 0, 1, 1]
    detections = CellDetections.from_instances(make_instances(masks, classes))
    for cell, nucleus in detections.match_nuclei(0, 1, 0.5):
        nuclei = [j for j, c in enumerate(classes) if c == 1]
        overlaps = [(masks[cell] & masks[j]).sum() / max(masks[j].sum(), 1) for j in nuclei]
        best = int(np.argmax(overlaps))
        assert nucleus == (nuclei[best] if overlaps[best] >= 0.5 and overlaps[best] > 0 else None)
    # the submission writer pairs cells with the same rule
    parts = pair_cells_with_nuclei(make_instances(masks, classes), 0, 1)
    assert len(parts) == classes.count(0)


def test_a_scaled_crop_keeps_its_place_and_size():
    full = np.zeros((400, 300), dtype=bool)
    full[100:200, 50:150] = True
    small = MaskCrop.from_full(full).scaled(0.25)
    assert (small.y, small.x, small.mask.shape, small.area) == (25, 13, (25, 25), 625)
