"""The per-case report: its counts, intervals and galleries follow the cells it was given."""
import json

import numpy as np
import pytest

from detectron2_myeloma.data.regions import ArrayRegions
from detectron2_myeloma.export.case_report import DISCLAIMER, GALLERY_SIZE, CaseReport
from detectron2_myeloma.structures import CellDetections, MaskCrop

CELL, NUCLEUS = 0, 1


def image_cells(labels, probs, nuclei: int = 0) -> CellDetections:
    """Square cells in a row, labelled and scored as given, plus unclassified nuclei (label -1)."""
    n = len(labels) + nuclei
    masks = [MaskCrop(10, 20 * i, np.ones((15, 15), bool)) for i in range(n)]
    return CellDetections((40, 20 * n + 20), np.array([[20 * i, 10, 20 * i + 15, 25] for i in range(n)], np.float32),
                          np.array([CELL] * len(labels) + [NUCLEUS] * nuclei), np.full(n, 0.9, np.float32), masks,
                          np.array(list(labels) + [-1] * nuclei), np.array(list(probs) + [np.nan] * nuclei, np.float32))


def add(report: CaseReport, name: str, detections: CellDetections) -> None:
    image = np.full((*detections.image_size, 3), 200, np.uint8)
    report.add(name, ArrayRegions(name, image), detections)


def test_counts_wilson_interval_and_galleries(tmp_path):
    report = CaseReport(CELL)
    rng = np.random.default_rng(0)
    probs = rng.permutation(100) / 100 + 0.005
    labels = (probs > 0.7).astype(int)  # 30 of 100
    for k in range(4):  # four images of 25 cells, with a nucleus each that must not count
        add(report, f"img{k}.png", image_cells(labels[25 * k:25 * (k + 1)], probs[25 * k:25 * (k + 1)], nuclei=3))
    report.write(str(tmp_path), "patient 7", "detector test.pth")
    summary = json.loads((tmp_path / "report.json").read_text())
    assert (summary["images"], summary["cells"], summary["myeloma"], summary["other"]) == (4, 100, 30, 70)
    assert summary["myeloma_fraction"] == pytest.approx(0.3)
    assert summary["ci95_wilson"] == pytest.approx([0.2190, 0.3959], abs=1e-3)  # Wilson for 30 / 100
    low, high = summary["ci95_bootstrap_images"]
    assert low <= 0.3 <= high
    assert [r["cells"] for r in summary["per_image"]] == [25] * 4
    calls = probs[labels == 1]
    most = summary["galleries"]["Most confident myeloma calls"]
    least = summary["galleries"]["Least confident myeloma calls"]
    assert [c["myeloma_prob"] for c in most] == pytest.approx(np.sort(calls)[::-1][:GALLERY_SIZE])
    assert [c["myeloma_prob"] for c in least] == pytest.approx(np.sort(calls)[:GALLERY_SIZE])
    assert (tmp_path / "gallery_most_confident.png").stat().st_size > 0
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        assert DISCLAIMER in text and "patient 7" in text and "gallery_least_confident.png" in text


def test_the_image_bootstrap_widens_the_interval_when_images_disagree(tmp_path):
    """Half the images all myeloma, half none: the cells are not independent draws, and the bootstrap
    over images says so where Wilson's interval cannot."""
    report = CaseReport(CELL)
    for k in range(6):
        label = k % 2
        add(report, f"img{k}.png", image_cells([label] * 20, [0.9 if label else 0.1] * 20))
    summary = report.summary()
    wilson, images = summary["ci95_wilson"], summary["ci95_bootstrap_images"]
    assert summary["myeloma_fraction"] == 0.5
    assert images[1] - images[0] > 1.5 * (wilson[1] - wilson[0])


def test_without_the_classifier_only_cells_are_counted(tmp_path):
    report = CaseReport(CELL)
    detections = image_cells([1, 0], [0.9, 0.1])
    detections.labels = detections.probs = None
    add(report, "a.png", detections)
    report.write(str(tmp_path), "case", "detector test.pth")
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["cells"] == 2 and "myeloma_fraction" not in summary and not summary["galleries"]
    assert "the cell classifier did not run" in (tmp_path / "report.md").read_text()
