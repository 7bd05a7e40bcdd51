"""Negatives: the stain heuristic finds real unannotated nuclei of cell size, detector negatives are
filtered against the annotations, and duplicates are dropped with the earlier box winning."""
import cv2
import numpy as np
import pytest

from detectron2_myeloma.classifier.dataset import image_candidates
from detectron2_myeloma.classifier.negatives import (CellSizePrior, annotation_boxes, drop_duplicates,
                                                     find_nucleus_blobs, max_iou, stain_negatives)
from detectron2_myeloma.data.masks import rle_to_mask


@pytest.fixture(scope="module")
def image_1991(segpc_records):
    record = segpc_records["1991"]
    return record, cv2.imread(record["file_name"])


def test_size_prior_is_measured_from_nuclei(prior):
    # SegPC at 2040x1536: nuclei of ~26k..59k px, cells ~1.6x wider than their nucleus.
    assert 5_000 < prior.min_nucleus_area < prior.max_nucleus_area < 150_000
    assert 1.2 < prior.cell_scale < 2.2
    assert 0.1 < prior.work_scale < 0.5


def test_size_prior_needs_nucleus_masks(segpc_records):
    record = dict(segpc_records["1991"])
    record["annotations"] = [{k: v for k, v in a.items() if k != "nucleus"} for a in record["annotations"]]
    with pytest.raises(ValueError, match="nucleus masks"):
        CellSizePrior.from_dataset([record])


def test_heuristic_finds_annotated_nuclei(image_1991, prior):
    """The blob finder is a nucleus detector: most annotated nuclei of a real image get a blob."""
    record, image = image_1991
    blobs = find_nucleus_blobs(image, prior)
    nuclei = [rle_to_mask(a["nucleus"]) for a in record["annotations"]]
    found = sum(any(n[int(cy), int(cx)] for _, (cx, cy) in blobs) for n in nuclei)
    assert found >= 0.8 * len(nuclei)


def test_heuristic_negatives_do_not_overlap_annotations(image_1991, prior):
    record, image = image_1991
    negatives = stain_negatives(image, record["annotations"], prior)
    assert len(negatives) >= 5  # 1991 has many unannotated lymphocytes and plasma-like cells
    annotated = np.zeros(image.shape[:2], bool)
    for a in record["annotations"]:
        annotated |= rle_to_mask(a["segmentation"])
    assert (max_iou(negatives, annotation_boxes(record["annotations"])) < 0.3).all()
    for x0, y0, x1, y1 in negatives:
        assert not annotated[int((y0 + y1) / 2), int((x0 + x1) / 2)]  # cell centre not in an annotated cell
        assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
        # cell-sized, like the annotated cells (235..528 px boxes on SegPC)
        assert 150 < max(x1 - x0, y1 - y0) < 700


def test_detector_negatives_filtered_and_deduplicated(image_1991, prior):
    record, image = image_1991
    cells = annotation_boxes(record["annotations"])
    stain = stain_negatives(image, record["annotations"], prior)
    detections = np.concatenate([cells[:2] + 3, stain[:1] + 5, [[1700, 1300, 1900, 1500]]])

    scales = []  # the detector runs at the record's own cell scale
    candidates = image_candidates(record, image, prior, lambda _, diameter: scales.append(diameter) or detections,
                                  0.3)
    assert scales == [record.get("cell_diameter")]
    by_source = {s: np.array([b for b, _, src in candidates if src == s]) for s in ("annotation", "detector",
                                                                                   "stain_heuristic")}
    assert len(by_source["annotation"]) == len(cells)
    np.testing.assert_allclose(by_source["detector"], detections[2:])  # the two matching cells are dropped
    assert len(by_source["stain_heuristic"]) == len(stain) - 1  # the one a detection duplicates
    assert all(label == (src == "annotation") for _, label, src in candidates)


def test_duplicates_are_dropped_in_order_and_kept_boxes_win():
    a, b, c, d = [0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 5], [2, 0, 12, 10]
    e, f, g = [102, 100, 112, 110], [105, 100, 115, 110], [10, 0, 20, 10]
    kept = np.array([[100, 100, 110, 110]], float)
    boxes = np.array([a, b, c, d, e, f, g], float)
    # b: IoU 1/3 with a; c: exactly 0.5 with a; d: 2/3 with a; e: 2/3 with the kept box; f: 1/3 with the
    # kept box and 0.54 with e, which is gone; g: 1/3 with b.
    np.testing.assert_array_equal(drop_duplicates(boxes, kept), [a, b, f, g])
    np.testing.assert_array_equal(drop_duplicates(boxes, np.zeros((0, 4))), [a, b, e, g])
    np.testing.assert_array_equal(drop_duplicates(np.array([d, a], float), np.zeros((0, 4))), [d])  # d first
    assert drop_duplicates(np.zeros((0, 4)), kept).shape == (0, 4)
