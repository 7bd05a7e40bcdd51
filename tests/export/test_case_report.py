"""The per-case report: its counts, intervals and galleries follow the cells it was given."""
import json

import numpy as np
import pytest

from detectron2_myeloma.data.colour import GREYSCALE_WARNING
from detectron2_myeloma.data.regions import ArrayRegions
from detectron2_myeloma.export.case_report import (
    DISCLAIMER,
    FRACTION_NOTE,
    GALLERY_SIZE,
    CaseReport,
    _gallery_picture,
    default_case_name,
)
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


def test_unread_images_and_image_warnings_are_listed_not_lost(tmp_path):
    """Three images read (one greyscale), two refused: the counts say 3 of 5, the refused are listed
    with their reasons, the greyscale image with its warning, and the fraction says what it is of."""
    report = CaseReport(CELL)
    for k in range(3):
        detections = image_cells([1, 0], [0.9, 0.2])
        image = np.full((*detections.image_size, 3), 200, np.uint8)
        report.add(f"img{k}.png", ArrayRegions(f"img{k}.png", image), detections,
                   [GREYSCALE_WARNING] if k == 1 else [])
    failures = [("in/broken.png", "not an image file"), ("in/half.jpg", "unreadable, truncated")]
    report.write(str(tmp_path), "case", "detector test.pth", failures)
    summary = json.loads((tmp_path / "report.json").read_text())
    assert (summary["images"], summary["images_not_read"]) == (3, 2)
    assert summary["not_read"] == [{"image": p, "reason": r} for p, r in failures]
    assert [r["warnings"] for r in summary["per_image"]] == [[], [GREYSCALE_WARNING], []]
    assert summary["myeloma_fraction_note"] == FRACTION_NOTE
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        assert "3 of 5 read" in text and "in/half.jpg" in text and "unreadable, truncated" in text
        assert text.index("Warnings") < text.index("img1.png") < text.index(GREYSCALE_WARNING) < text.index(
            "Images not read")
        assert "not of all nucleated cells" in text and FRACTION_NOTE in text


def test_a_case_whose_images_were_all_refused_says_so(tmp_path):
    CaseReport(CELL).write(str(tmp_path), "case", "detector test.pth", [("a.png", "not an image file")])
    text = (tmp_path / "report.md").read_text()
    assert "no image could be read" in text and "classifier did not run" not in text and "a.png" in text


def test_the_default_case_name_of_a_segpc_image_folder_is_its_dataset_and_split(segpc_mini, tmp_path):
    assert default_case_name(str(segpc_mini / "x")) == "segpc_mini/train"
    assert default_case_name(str(segpc_mini / "x") + "/") == "segpc_mini/train"
    assert default_case_name(str(segpc_mini / "x" / "2011.jpg")) == "2011.jpg"
    (tmp_path / "patient 7").mkdir()
    assert default_case_name(str(tmp_path / "patient 7")) == "patient 7"


def outline_width(picture: np.ndarray) -> int:
    """Width in pixels of the cell outline drawn in a gallery picture."""
    columns = np.flatnonzero((picture == (60, 20, 220)).all(axis=2).any(axis=0))
    return int(columns[-1] - columns[0] + 1)


@pytest.mark.parametrize("pixel_size", [None, 0.1])
def test_gallery_pictures_share_one_scale_across_images(tmp_path, pixel_size):
    """A cell twice as wide as another, in another image, is drawn twice as wide (a picture per cell
    scaled to its own size would draw both alike); each picture shows 2 median diameters of the case."""
    report = CaseReport(CELL, pixel_size_um=pixel_size)
    for name, radius in (("small.png", 20), ("large.png", 40)):
        size = 8 * radius
        yy, xx = np.ogrid[:size, :size]
        mask = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= radius ** 2
        image = np.where(mask[..., None], np.uint8(120), np.uint8(230)).repeat(3, axis=2)
        crop = MaskCrop.from_full(mask)
        box = np.array([[crop.x, crop.y, crop.x + crop.mask.shape[1], crop.y + crop.mask.shape[0]]], np.float32)
        detections = CellDetections((size, size), box, np.array([CELL]), np.array([0.9], np.float32), [crop],
                                    np.array([1]), np.array([0.8 if radius == 20 else 0.9], np.float32))
        report.add(name, ArrayRegions(name, image), detections)
    window = report.window_px()
    assert window == pytest.approx(2 * 60, rel=0.02)  # median of diameters 40 and 80: 60
    small, large = (_gallery_picture(c.picture, window) for c in sorted(report.most, key=lambda c: c.prob))
    assert outline_width(large) / outline_width(small) == pytest.approx(2, rel=0.1)
    report.write(str(tmp_path), "case", "detector test.pth")
    text = (tmp_path / "report.md").read_text()
    assert f"a square of {window:.0f} image pixels" in text
    assert ("µm" in text) == (pixel_size is not None)
    assert json.loads((tmp_path / "report.json").read_text())["gallery_window_px"] == pytest.approx(window)
