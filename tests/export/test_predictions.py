"""PredictionWriter and the overlays on a real bundled frame: image warnings reach summary.csv, a model
without a nucleus class gets QuPath detection objects (not nucleus-less cells), and overlay captions
carry the cells.csv index and the myeloma probability."""
import csv
import json
import logging

import cv2
import numpy as np
import pytest
from detectron2.data import Metadata

from detectron2_myeloma.data.colour import GREYSCALE_WARNING, colour_warnings
from detectron2_myeloma.data.images import image_files, image_stem
from detectron2_myeloma.data.regions import ArrayRegions
from detectron2_myeloma.data.segpc_format import cell_and_nucleus, read_segpc_mask
from detectron2_myeloma.export.overlays import draw_overlay, overlay_captions
from detectron2_myeloma.export.predictions import SUMMARY_COLUMNS, PredictionWriter
from detectron2_myeloma.structures import CellDetections, MaskCrop

ONE_CLASS = Metadata(name="one class", thing_classes=["cell"])  # as the shipped model: no nucleus


def annotated_cells(segpc_mini, image_id: str, classified: bool = True) -> CellDetections:
    """The annotated cells of a bundled frame, as a one-class model with the classifier would give them."""
    masks = [np.logical_or(*cell_and_nucleus(read_segpc_mask(str(p))))
             for p in sorted((segpc_mini / "y").glob(f"{image_id}_*"))]
    crops = [MaskCrop.from_full(m) for m in masks]
    boxes = np.array([[c.x, c.y, c.x + c.mask.shape[1], c.y + c.mask.shape[0]] for c in crops], np.float32)
    n = len(crops)
    probs = np.linspace(0.95, 0.05, n).astype(np.float32)
    return CellDetections(masks[0].shape, boxes, np.zeros(n, np.int64), np.full(n, 0.9, np.float32), crops,
                          (probs > 0.5).astype(int) if classified else None, probs if classified else None)


def test_a_greyscale_frame_is_flagged_in_summary_csv(segpc_mini, tmp_path, caplog):
    frame = cv2.imread(str(segpc_mini / "x" / "2011.jpg"))
    grey = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    detections = annotated_cells(segpc_mini, "2011")
    with caplog.at_level(logging.WARNING):
        with PredictionWriter(str(tmp_path), ONE_CLASS, 0, None, None) as writer:
            for path, image in (("2011.jpg", frame), ("2011_grey.jpg", grey)):
                regions = ArrayRegions(path, image)
                writer.add(1, path, regions, detections, colour_warnings(regions))
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == SUMMARY_COLUMNS
    assert [r["warning"] for r in rows] == ["", GREYSCALE_WARNING]
    assert caplog.text.count("WARNING") == 1 and "2011_grey.jpg" in caplog.text


@pytest.mark.parametrize("object_type", ["cell", "annotation"])
def test_qupath_cells_of_a_model_without_nuclei_become_detections(segpc_mini, tmp_path, caplog, object_type):
    frame = cv2.imread(str(segpc_mini / "x" / "2011.jpg"))
    with caplog.at_level(logging.WARNING):
        with PredictionWriter(str(tmp_path), ONE_CLASS, 0, None, {"object_type": object_type}) as writer:
            for k in (1, 2):  # two images, one warning
                name = f"frame{k}.jpg"
                writer.add(k, name, ArrayRegions(name, frame), annotated_cells(segpc_mini, "2011"))
    features = json.loads((tmp_path / "frame1.geojson").read_text())["features"]
    assert features and {f["properties"]["objectType"] for f in features} == {
        "detection" if object_type == "cell" else object_type}
    assert all("nucleusGeometry" not in f for f in features)
    assert caplog.text.count("predicts no nucleus") == (1 if object_type == "cell" else 0)


def test_overlay_captions_carry_the_cells_csv_index_and_the_myeloma_probability(segpc_mini, tmp_path):
    first = image_files(str(segpc_mini / "x"))[0]
    detections = annotated_cells(segpc_mini, image_stem(first))
    unclassified = annotated_cells(segpc_mini, image_stem(first), classified=False)
    frame = cv2.imread(first)
    with PredictionWriter(str(tmp_path), ONE_CLASS, 0) as writer:
        writer.add(1, "a.jpg", ArrayRegions("a.jpg", frame), detections)
    with open(tmp_path / "cells.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    captions = overlay_captions(detections, ONE_CLASS)
    assert [c for c, _ in captions] == [f"#{c['index']} {'myeloma' if c['myeloma_label'] == '1' else 'other'} "
                                        f"{float(c['myeloma_prob']):.2f}" for c in cells]
    assert "other 0.05" in captions[-1][0]  # the myeloma probability, not a confidence in "other"
    assert {colour for _, colour in captions} == {(61, 20, 219), (76, 161, 0)}  # BGR: myeloma red, other green
    assert [c for c, _ in overlay_captions(unclassified, ONE_CLASS)] == [f"#{k} cell 90%" for k in range(len(cells))]


def test_the_overlay_fills_and_outlines_each_cell_in_its_colour(segpc_mini):
    """Cells tinted towards their colour, the background untouched, and the frame's size kept."""
    frame = cv2.imread(str(segpc_mini / "x" / "2011.jpg"))
    detections = annotated_cells(segpc_mini, "2011")
    overlay = draw_overlay(frame, detections, ONE_CLASS)
    assert overlay.shape == frame.shape
    near = np.zeros(frame.shape[:2], bool)  # each box, with room for its caption above it
    for x0, y0, x1, y1 in detections.boxes.round().astype(int):
        near[max(y0 - 40, 0):y1 + 2, max(x0 - 1, 0):max(x1, x0 + 300) + 2] = True
    assert np.array_equal(overlay[~near], frame[~near])  # only cells, outlines, boxes and captions are drawn
    first = detections.masks[0]
    inner = cv2.erode(first.mask.astype(np.uint8), np.ones((9, 9))).astype(bool)
    ys, xs = np.nonzero(inner)
    colour = np.array(overlay_captions(detections, ONE_CLASS)[0][1], float)
    before = frame[ys + first.y, xs + first.x].astype(float)
    after = overlay[ys + first.y, xs + first.x].astype(float)
    blended = np.abs(after - (0.6 * before + 0.4 * colour)).max(axis=1) <= 1  # 40% towards its red
    assert blended.mean() > 0.8  # the rest: captions drawn over the cell


def test_each_cells_own_nucleus_reaches_cells_csv_and_qupath_cell_objects(segpc_mini, tmp_path, caplog):
    """A one-class model that predicts each cell's nucleus: cells.csv has its area and the N/C ratio,
    and QuPath gets cell objects with the nucleus as nucleusGeometry, without a warning."""
    frame = cv2.imread(str(segpc_mini / "x" / "2011.jpg"))
    parts = [cell_and_nucleus(read_segpc_mask(str(p))) for p in sorted((segpc_mini / "y").glob("2011_*"))]
    detections = annotated_cells(segpc_mini, "2011")
    detections.nuclei = [MaskCrop.from_full(nucleus) for _, nucleus in parts]
    with caplog.at_level(logging.WARNING):
        with PredictionWriter(str(tmp_path), ONE_CLASS, 0, None, {"object_type": "cell"}, own_nuclei=True) as writer:
            writer.add(1, "2011.jpg", ArrayRegions("2011.jpg", frame), detections)
    assert "predicts no nucleus" not in caplog.text
    with open(tmp_path / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["nucleus_area"]) for r in rows] == [int(n.sum()) for _, n in parts]
    for row, (cytoplasm, nucleus) in zip(rows, parts):
        assert float(row["nc_ratio"]) == pytest.approx(nucleus.sum() / (cytoplasm | nucleus).sum(), abs=1e-4)
    features = json.loads((tmp_path / "2011.geojson").read_text())["features"]
    assert {f["properties"]["objectType"] for f in features} == {"cell"}
    assert all("nucleusGeometry" in f for f in features)


def test_overlays_outline_each_cells_own_nucleus(segpc_mini):
    """The overlay of cells with their own nuclei differs from the one without inside the cells only."""
    frame = cv2.imread(str(segpc_mini / "x" / "2011.jpg"))
    detections = annotated_cells(segpc_mini, "2011")
    plain = draw_overlay(frame, detections, ONE_CLASS)
    detections.nuclei = [MaskCrop.from_full(cell_and_nucleus(read_segpc_mask(str(p)))[1])
                         for p in sorted((segpc_mini / "y").glob("2011_*"))]
    with_nuclei = draw_overlay(frame, detections, ONE_CLASS)
    changed = (plain != with_nuclei).any(axis=2)
    cells = detections.union_mask(range(len(detections)))
    assert changed.sum() > 100 and not (changed & ~cv2.dilate(cells.astype(np.uint8), np.ones((5, 5))).astype(bool)).any()


def test_a_picture_that_cannot_be_written_fails_the_writer(segpc_mini, tmp_path, monkeypatch):
    """Pictures are written in the background; a failure still reaches the caller, naming the file."""
    frame = cv2.imread(str(segpc_mini / "x" / "2011.jpg"))
    monkeypatch.setattr(cv2, "imwrite", lambda path, image: False)
    with pytest.raises(OSError, match="2011_overlay.png: cannot write image"):
        with PredictionWriter(str(tmp_path), ONE_CLASS, 0) as writer:
            writer.add(1, "2011.jpg", ArrayRegions("2011.jpg", frame), annotated_cells(segpc_mini, "2011"))
