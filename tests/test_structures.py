"""CellDetections: masks kept as crops must give the same answers as full-size masks."""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

from detectron2_myeloma import add_myeloma_config
from detectron2_myeloma.data.segpc_format import cell_and_nucleus, read_segpc_mask
from detectron2_myeloma.evaluation.submission import iter_cell_parts
from detectron2_myeloma.structures import NUCLEUS_MASKS, CellDetections, MaskCrop

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



def test_back_to_instances_holds_the_full_size_masks_and_every_field():
    """What the evaluators get from the tools' path (engine/inference.py): the model's fields, whole."""
    masks, nuclei = random_masks(8), random_masks(9)
    instances = make_instances(masks, [0, 1, 0, 1, 0, 1])
    instances.set(NUCLEUS_MASKS, torch.from_numpy(nuclei & masks))
    detections = CellDetections.from_instances(instances)
    back = detections.to_instances()
    assert back.image_size == (H, W)
    assert torch.equal(back.pred_masks, instances.pred_masks) and back.pred_masks.dtype == torch.bool
    assert torch.equal(back.get(NUCLEUS_MASKS), instances.get(NUCLEUS_MASKS))
    assert torch.equal(back.pred_boxes.tensor, instances.pred_boxes.tensor)
    assert torch.equal(back.pred_classes, instances.pred_classes) and torch.equal(back.scores, instances.scores)
    assert torch.equal(back.pred_cell_labels, instances.pred_cell_labels)
    assert torch.allclose(back.pred_cell_probs, instances.pred_cell_probs[:, 1])
    assert not CellDetections.empty((H, W)).to_instances().has(NUCLEUS_MASKS)
    assert tuple(CellDetections.empty((H, W)).to_instances().pred_masks.shape) == (0, H, W)


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
    parts = list(iter_cell_parts(detections, 0, 1))
    assert len(parts) == classes.count(0)


def test_a_scaled_crop_keeps_its_place_and_size():
    full = np.zeros((400, 300), dtype=bool)
    full[100:200, 50:150] = True
    small = MaskCrop.from_full(full).scaled(0.25)
    assert (small.y, small.x, small.mask.shape, small.area) == (25, 13, (25, 25), 625)


def disc(cy: int, cx: int, r: int, shape=(120, 160)) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def detections_of(masks, classes) -> CellDetections:
    crops = [MaskCrop.from_full(m) for m in masks]
    n = len(crops)
    return CellDetections(masks[0].shape, np.zeros((n, 4), np.float32), np.array(classes),
                          np.linspace(0.9, 0.5, n).astype(np.float32), crops)


def test_a_fragment_inside_a_larger_cell_is_dropped_but_not_a_neighbour_or_a_nucleus():
    masks = [disc(60, 60, 30), disc(50, 55, 10),  # a cell, a fragment wholly inside it
             disc(60, 60, 12),  # a nucleus inside the cell: another class
             disc(60, 20, 20),  # a neighbour overlapping the cell's left edge
             disc(60, 90, 12)]  # a small cell centred on its right edge: about half inside
    detections = detections_of(masks, [0, 0, 1, 0, 0])  # scored in this order, best first
    inside = [(m & masks[0]).sum() / m.sum() for m in masks]
    assert 0.15 < inside[3] < 0.3 and 0.4 < inside[4] < 0.5, inside
    kept = detections.without_fragments(inside[4] - 0.01)
    assert kept.classes.tolist() == [0, 1, 0] and kept.scores.tolist() == detections.scores[[0, 2, 3]].tolist()
    assert kept.masks == [detections.masks[i] for i in (0, 2, 3)]
    assert len(detections.without_fragments(inside[4] + 0.01)) == 4  # only the fragment goes
    assert detections.without_fragments(0) is detections


def test_two_cells_inside_a_lower_scored_merge_of_both_stay():
    """As on segpc_lowres frames 1742, 1839 and 1854: two well-scored cells lying inside one
    lower-scored mask spanning both are the cells, not fragments of it."""
    left, right = disc(60, 50, 20), disc(60, 90, 20)
    merge = np.zeros_like(left)
    merge[38:83, 28:113] = True
    detections = detections_of([left, right, merge], [0, 0, 0])  # scores 0.9, 0.7, 0.5
    assert len(detections.without_fragments(0.5)) == 3
    detections.scores = detections.scores[::-1].copy()  # the merge best scored: the two are its fragments
    assert detections.without_fragments(0.5).masks == [detections.masks[2]]


@pytest.mark.parametrize("seed", range(4))
def test_fragments_on_crops_are_the_full_mask_rule(seed):
    """Against the rule on full-size masks: dropped iff some strictly larger, higher-scored mask of the
    same class holds at least ``max_inside`` of it."""
    masks = random_masks(seed, n=10)
    classes = [0, 1, 0, 0, 1, 0, 0, 0, 1, 0]
    detections = detections_of(masks, classes)
    detections.scores = np.random.default_rng(seed).permutation(detections.scores)
    score = detections.scores
    for max_inside in (0.3, 0.5, 0.8):
        expected = [i for i, m in enumerate(masks)
                    if not any(classes[j] == classes[i] and masks[j].sum() > m.sum() > 0 and score[j] > score[i]
                               and (m & masks[j]).sum() >= max_inside * m.sum() for j in range(len(masks)))]
        assert detections.without_fragments(max_inside).scores.tolist() == score[expected].tolist()


def test_a_duplicate_annotation_of_a_real_frame_is_its_only_fragment(segpc_mini):
    """Frame 2044 of the bundled sample: mask 2044_5 is a second, slightly smaller outline of the cell of
    2044_3 (97% inside it, and scored lower here as it comes later); its seven distinct cells, some
    touching, overlap one another far less."""
    paths = sorted((segpc_mini / "y").glob("2044_*"))
    detections = detections_of([np.logical_or(*cell_and_nucleus(read_segpc_mask(str(p)))) for p in paths],
                               [0] * len(paths))
    cfg = get_cfg()
    add_myeloma_config(cfg)
    kept = detections.without_fragments(cfg.TEST.FRAGMENT_MAX_INSIDE).scores.tolist()
    assert [p.stem for p, score in zip(paths, detections.scores.tolist()) if score not in kept] == ["2044_5"]


@pytest.mark.parametrize("seed", range(3))
def test_own_nuclei_are_each_cells_and_a_class_pairing_is_clipped_to_its_cell(seed):
    """cell_nuclei: a model's own nucleus per detection (kept by subset, shift and concatenation),
    else the paired nucleus detection cut to the cell; the same pairs the submission writer makes."""
    masks = random_masks(seed, n=6)
    classes = [0, 1, 0, 1, 0, 0]
    paired = CellDetections.from_instances(make_instances(masks, classes))
    for cell, nucleus in paired.cell_nuclei(0, 1, 0.5):
        j = dict(paired.match_nuclei(0, 1, 0.5))[cell]
        expected = None if j is None else masks[cell] & masks[j]
        got = np.zeros_like(masks[cell])
        if nucleus is not None:
            nucleus.paste(got)
        assert (nucleus is None) == (j is None) and (expected is None or np.array_equal(got, expected))
    instances = make_instances(masks, [0] * 6)
    own = np.roll(masks, 7, axis=2)  # partly outside each cell, as a model's raw nucleus may be
    instances.set(NUCLEUS_MASKS, torch.from_numpy(own & masks))
    detections = CellDetections.from_instances(instances)
    pairs = detections.cell_nuclei(0, None, 0.5)
    assert [i for i, _ in pairs] == list(range(6))
    for i, nucleus in pairs:
        assert (nucleus is None) == (not (own[i] & masks[i]).any())
        if nucleus is not None:
            assert np.array_equal(CellDetections(detections.image_size, detections.boxes[:1], detections.classes[:1],
                                                 detections.scores[:1], [nucleus]).union_mask([0]), own[i] & masks[i])
    moved = CellDetections.cat([detections.subset([4, 1]).shifted(3, 5, (H + 3, W + 5))], (H + 3, W + 5))
    assert [(m.y, m.x) for m in moved.nuclei] == [(detections.nuclei[i].y + 3, detections.nuclei[i].x + 5) for i in (4, 1)]
    parts = list(iter_cell_parts(detections, 0, None))
    for i, (nucleus, cytoplasm) in enumerate(parts):
        assert np.array_equal(nucleus, own[i] & masks[i]) and np.array_equal(cytoplasm, masks[i] & ~own[i])


def test_a_crop_pastes_clipped_at_every_edge_and_clips_to_another():
    canvas = np.zeros((5, 5), dtype=bool)
    MaskCrop(-2, -1, np.ones((4, 3), dtype=bool)).paste(canvas)
    assert canvas.sum() == 2 * 2 and canvas[:2, :2].all()
    a, b = MaskCrop(0, 0, np.ones((4, 4), dtype=bool)), MaskCrop(2, 3, np.ones((4, 4), dtype=bool))
    inside = a.clipped_to(b)
    assert (inside.y, inside.x, inside.mask.shape, inside.area) == (2, 3, (2, 1), 2)
