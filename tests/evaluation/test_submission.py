"""SegPC submission writer: exact on real ground truth, never an empty pixel list, atomic, masks-out."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.structures import Instances

from detectron2_myeloma.data.segpc_format import (
    CYTOPLASM_VALUE,
    NUCLEUS_VALUE,
    read_segpc_mask,
    read_submission,
    resize_to_submission,
)
from detectron2_myeloma.evaluation.submission import (
    ESTIMATED_NUCLEUS,
    NUCLEUS_AREA_FRACTION,
    ONE_PIXEL_NUCLEUS,
    PREDICTED,
    RING_CYTOPLASM,
    SubmissionWriter,
    complete_cell,
    iter_cell_parts,
    submission_parts,
)
from detectron2_myeloma.structures import CellDetections
from cli import tool_main

make_submission = tool_main("make_submission")
score_segpc = tool_main("score_segpc")

H, W = 1536, 2040  # SegPC-2021 Olympus image size
CELL, NUCLEUS = 0, 1


def disc(row: int, col: int, radius: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    cv2.circle(mask, (col, row), radius, 1, -1)
    return mask.astype(bool)


def make_detections(detections) -> CellDetections:
    """Detector-like CellDetections from [(class, score, mask)]."""
    instances = Instances((H, W))
    instances.pred_classes = torch.tensor([c for c, _, _ in detections], dtype=torch.long)
    instances.scores = torch.tensor([s for _, s, _ in detections], dtype=torch.float32)
    instances.pred_masks = torch.from_numpy(np.stack([m for _, _, m in detections]) if detections
                                            else np.zeros((0, H, W), bool))
    return CellDetections.from_instances(instances)


def test_ground_truth_masks_score_exactly_one(segpc_mini, tmp_path, capsys):
    """Bundled y/ masks -> make_submission --masks-in --images -> score_segpc: mIoU 1.0; an image
    without masks gets an id-only line; the GT nuclei go through unchanged."""
    images = tmp_path / "x"
    images.mkdir()
    for image in (segpc_mini / "x").iterdir():
        (images / image.name).symlink_to(image)
    (images / "9999.bmp").symlink_to(segpc_mini / "x" / "2009.jpg")  # an image nobody annotated
    submission = tmp_path / "submission.txt"
    assert make_submission(["--masks-in", str(segpc_mini / "y"), "--images", str(images),
                            "--output", str(submission)]) == 0
    assert "15 images, 90 instances (90 predicted), 0 cells dropped" in capsys.readouterr().out
    assert "9999\n" in submission.read_text().splitlines(keepends=True)
    parsed = read_submission(str(submission))
    assert len(parsed) == 15 and parsed["9999"] == []
    assert sum(len(v) for v in parsed.values()) == 90
    gt_2009 = [read_segpc_mask(str(p)) for p in sorted((segpc_mini / "y").glob("2009_*.png"))]
    for (nucleus, cytoplasm), mask in zip(parsed["2009"], gt_2009):
        assert np.array_equal(nucleus, resize_to_submission(mask == NUCLEUS_VALUE))
        assert np.array_equal(cytoplasm, resize_to_submission(mask == CYTOPLASM_VALUE))

    score_segpc(["--gt", str(segpc_mini / "y"), "--submission", str(submission)])
    assert capsys.readouterr().out.splitlines()[-1] == "mIoU 1.000000"


def test_adversarial_instances_never_give_an_empty_list(tmp_path):
    cell_ring, nucleus_ring = disc(300, 1300, 80), disc(300, 1300, 90)
    thin = np.zeros((H, W), bool)
    thin[1200:1202, 900:1100] = True  # 2 rows: one survives the 1536 -> 1080 resize, as a 1-pixel line
    tiny = np.zeros((H, W), bool)
    tiny[1000, 1000] = True
    normal_cell, normal_nucleus = disc(300, 300, 100), disc(310, 300, 40)
    bare, outside_cell = disc(300, 800, 100), disc(1000, 300, 100)
    detections = make_detections([
        (NUCLEUS, 0.9, disc(1000, 700, 40)),  # belongs to no cell
        (CELL, 0.6, outside_cell),  # its only nearby nucleus lies outside it
        (CELL, 0.99, normal_cell),
        (NUCLEUS, 0.9, normal_nucleus),
        (CELL, 0.9, bare),  # no nucleus
        (CELL, 0.8, cell_ring),
        (NUCLEUS, 0.9, nucleus_ring),  # covers the whole cell
        (CELL, 0.7, tiny),  # vanishes at 1080x1440
        (CELL, 0.55, thin),
        (CELL, 0.1, disc(1300, 1800, 90)),  # under the score threshold
    ])
    masks_out = tmp_path / "masks"
    with SubmissionWriter(tmp_path / "submission.txt", masks_out=str(masks_out)) as writer:
        written = writer.write("img", submission_parts(detections, CELL, NUCLEUS, score_threshold=0.5))
    assert written == 5
    assert writer.stats.dropped == 1
    assert writer.stats.rules == {PREDICTED: 1, ESTIMATED_NUCLEUS: 2, RING_CYTOPLASM: 1, ONE_PIXEL_NUCLEUS: 1}

    parsed = read_submission(str(tmp_path / "submission.txt"))["img"]  # raises on any empty list
    expected_cells = [normal_cell, bare, cell_ring, outside_cell, thin]  # by score, tiny dropped
    for (nucleus, cytoplasm), cell in zip(parsed, expected_cells):
        assert nucleus.any() and cytoplasm.any() and not (nucleus & cytoplasm).any()
        assert np.array_equal(nucleus | cytoplasm, resize_to_submission(cell))
    assert np.array_equal(parsed[0][0], resize_to_submission(normal_nucleus))
    for (nucleus, _), cell in zip(parsed[1:4:2], (bare, outside_cell)):  # estimated: ~40% inner core
        frame_cell = resize_to_submission(cell)
        assert abs(nucleus.sum() / frame_cell.sum() - NUCLEUS_AREA_FRACTION) < 0.02
        assert nucleus[tuple(np.argwhere(frame_cell).mean(axis=0).round().astype(int))]  # holds the centre
    ring = parsed[2][1]
    frame_cell = resize_to_submission(cell_ring)
    eroded = cv2.erode(frame_cell.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.array_equal(ring, frame_cell & ~eroded)  # the pixels with a background 8-neighbour
    assert parsed[4][0].sum() == 1

    assert sorted(p.name for p in Path(masks_out).glob("*.bmp")) == [f"img_{k}.bmp" for k in range(1, 6)]
    expected = np.where(normal_nucleus, NUCLEUS_VALUE, np.where(normal_cell, CYTOPLASM_VALUE, 0))
    assert np.array_equal(read_segpc_mask(str(masks_out / "img_1.bmp")), expected)
    for k, cell in enumerate(expected_cells, start=1):
        mask = read_segpc_mask(str(masks_out / f"img_{k}.bmp"))
        assert mask.shape == (H, W) and np.array_equal(mask > 0, cell)
        assert set(np.unique(mask)) == {0, CYTOPLASM_VALUE, NUCLEUS_VALUE}


def test_pairing_picks_the_most_overlapping_nucleus():
    cell = disc(500, 500, 150)
    half_in, inside = disc(500, 650, 40), disc(480, 470, 50)
    detections = make_detections([(CELL, 0.9, cell), (NUCLEUS, 0.8, half_in), (NUCLEUS, 0.7, inside)])
    (nucleus, cytoplasm), = list(iter_cell_parts(detections, CELL, NUCLEUS))
    assert np.array_equal(nucleus, inside) and np.array_equal(cytoplasm, cell & ~inside)
    # A one-class model: no nucleus at all, left for complete_cell to estimate.
    (nucleus, cytoplasm), = list(iter_cell_parts(make_detections([(CELL, 0.9, cell)]), CELL, None))
    assert not nucleus.any() and np.array_equal(cytoplasm, cell)
    parts = complete_cell(resize_to_submission(cell), resize_to_submission(nucleus))
    assert parts.rule == ESTIMATED_NUCLEUS and parts.nucleus.any() and parts.cytoplasm.any()


def test_image_without_detections_gets_its_id_line(tmp_path):
    path = tmp_path / "submission.txt"
    with SubmissionWriter(path) as writer:
        writer.write("a", [])
        assert writer.write("b", submission_parts(make_detections([]), CELL, NUCLEUS)) == 0
        with pytest.raises(ValueError, match="twice"):
            writer.write("a", [])
    assert path.read_text() == "a\nb\n"
    assert read_submission(str(path)) == {"a": [], "b": []}


def test_writer_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "submission.txt"
    with pytest.raises(RuntimeError, match="boom"):
        with SubmissionWriter(path) as writer:
            writer.write("a", [])
            raise RuntimeError("boom")
    assert list(Path(tmp_path).iterdir()) == []
