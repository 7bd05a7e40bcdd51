"""The cell scale of an image, decided once: given, known from the frame size, or estimated from the
image; values that cannot be right refused in one line."""
import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from cli import tool_main
from detectron2.structures import Boxes, Instances

from detectron2_myeloma.data.datasets.builtin import CELL_DIAMETERS
from detectron2_myeloma.data.images import image_files
from detectron2_myeloma.data.regions import ArrayRegions, open_regions
from detectron2_myeloma.engine import cell_scale
from detectron2_myeloma.engine.cell_scale import (MIN_CELL_DIAMETER, CellScaleFinder, check_cell_diameter,
                                                  check_given_diameter, parse_cell_diameter, scale_warning)
from detectron2_myeloma.engine.defaults import setup_inference
from detectron2_myeloma.engine.predictor import build_predictor, build_scale_finder
from detectron2_myeloma.engine.tiling import TiledPredictor
from detectron2_myeloma.structures import CellDetections, CellScale
from detectron2_myeloma.utils.errors import InputError
from test_tiling import tiling_cfg

predict = tool_main("predict")
REPO = Path(__file__).resolve().parents[2]


def discs(shape, diameter: float, count: int, seed: int = 0) -> np.ndarray:
    """Dark stained discs of about ``diameter`` px (+-10%) on a pale background, none touching."""
    rng = np.random.default_rng(seed)
    image = np.full((*shape, 3), (230, 220, 235), np.uint8)
    taken = np.zeros(shape, bool)
    for _ in range(count * 20):
        radius = diameter / 2 * rng.uniform(0.9, 1.1)
        cy, cx = rng.uniform(radius, shape[0] - radius), rng.uniform(radius, shape[1] - radius)
        mask = np.zeros(shape, np.uint8)
        cv2.circle(mask, (int(cx), int(cy)), int(radius), 1, -1)
        if (cv2.dilate(mask, np.ones((3, 3), np.uint8)) & taken).any():
            continue
        taken |= mask > 0
        image[mask > 0] = (150, 60, 120)
        count -= 1
        if not count:
            break
    return image


def scale_selective_detector(calls=None):
    """A stand-in detector that, like a trained one, is confident about cells near the scale it is run
    at: each blob is a detection with its exact mask, scored by how close its size is to ``diameter``."""
    def detect(image: np.ndarray, diameter: float) -> CellDetections:
        if calls is not None:
            calls.append((image.shape[:2], diameter))
        count, labels = cv2.connectedComponents((image.min(axis=2) < 100).astype(np.uint8))
        masks = [labels == k for k in range(1, count)]
        sizes = np.array([math.sqrt(4 * m.sum() / math.pi) for m in masks])
        scores = 0.95 * np.exp(-np.log(sizes / diameter) ** 2 / (2 * 0.4 ** 2)) if masks else np.zeros(0)
        boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in (np.nonzero(m) for m in masks)]
        instances = Instances(image.shape[:2],
                              pred_masks=torch.from_numpy(np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool)),
                              pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
                              scores=torch.as_tensor(scores, dtype=torch.float32),
                              pred_classes=torch.zeros(len(masks), dtype=torch.long))
        return CellDetections.from_instances(instances)
    return detect


@pytest.mark.parametrize("diameter", [20.0, 40.0, 150.0])
def test_the_median_cell_diameter_is_estimated_from_the_image(diameter):
    calls = []
    finder = CellScaleFinder(scale_selective_detector(calls), target=80.0, tile=704, cell_class=0)
    side = int(diameter * 12)
    image = discs((side, int(side * 1.3)), diameter, count=25)
    scale = finder(ArrayRegions("discs.png", image))
    count, labels, stats, _ = cv2.connectedComponentsWithStats((image.min(axis=2) < 100).astype(np.uint8))
    drawn = np.median(np.sqrt(4 * stats[1:, cv2.CC_STAT_AREA] / np.pi))  # of the discs as drawn, in whole pixels
    assert scale.source == "estimated" and scale.diameter == pytest.approx(drawn, rel=0.1)
    assert "median of" in scale.detail
    # every candidate is tried on one window of about SEARCH_WINDOW model pixels, never the whole image
    assert len(calls) <= len(finder.candidates(image.shape[:2])) + 3
    assert all(max(shape) <= math.ceil(704 * d / 80) for shape, d in calls)


def test_given_and_known_frame_sizes_come_before_any_estimate():
    calls = []
    finder = CellScaleFinder(scale_selective_detector(calls), 80.0, 704, 0)
    assert finder(ArrayRegions("frame.png", np.zeros((1536, 2040, 3), np.uint8))) == CellScale(
        CELL_DIAMETERS["segpc_mini"], "frame size", "2040x1536 px, a SegPC-2021 frame size")
    given = CellScaleFinder(scale_selective_detector(calls), 80.0, 704, 0, given=55.0)
    assert given(ArrayRegions("any.png", np.zeros((300, 500, 3), np.uint8))).diameter == 55.0
    assert calls == []


def test_auto_estimates_segpc_frame_sizes_too():
    """A 2040x1536 image from another microscope: --cell-diameter auto measures it rather than assume
    SegPC's 320 px cells."""
    image = discs((1536, 2040), 100.0, count=30)
    finder = CellScaleFinder(scale_selective_detector(), 80.0, 704, 0, given="auto")
    scale = finder(ArrayRegions("other_microscope.png", image))
    assert scale.source == "estimated" and scale.diameter == pytest.approx(100, rel=0.1)


def test_the_survey_decodes_no_known_frame_and_searches_no_image_twice(segpc_mini, tmp_path, monkeypatch):
    """Known frame sizes are told from the file's header (no decoding before the prediction pass does);
    an image with no cell at any scale is searched once, its reason given again when it is predicted."""
    calls = []
    finder = CellScaleFinder(scale_selective_detector(calls), 80.0, 704, 0)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 400, 3), 220, np.uint8))
    opened = []
    monkeypatch.setattr(cell_scale, "open_regions", lambda path: opened.append(path) or open_regions(path))
    finder.survey([str(segpc_mini / "x" / "2009.jpg"), str(blank)])
    assert opened == [str(blank)] and calls
    searched = len(calls)
    with pytest.raises(InputError, match="blank.png: no cell found at any scale"):
        finder(ArrayRegions(str(blank), cv2.imread(str(blank))))
    assert len(calls) == searched


def test_images_of_one_size_share_the_median_of_all_their_cells(tmp_path):
    """Frames of one camera get one scale, pooled over all their cells; an image of the same size whose
    own cells are twice as large keeps its own estimate."""
    paths = []
    for seed, diameter in enumerate((36.0, 44.0, 40.0, 80.0)):
        paths.append(str(tmp_path / f"{seed}.png"))
        cv2.imwrite(paths[-1], discs((600, 800), diameter, count=12, seed=seed))
    finder = CellScaleFinder(scale_selective_detector(), 80.0, 704, 0)
    finder.survey(paths)
    scales = [finder(ArrayRegions(p, cv2.imread(p))) for p in paths]
    pooled = scales[0]
    assert scales[1] == pooled == scales[2] and "over the 3 images of 800x600 px" in pooled.detail
    assert pooled.diameter == pytest.approx(40, rel=0.1)
    assert scales[3].diameter == pytest.approx(80, rel=0.1) and "measured alone" in scales[3].detail


def test_diameters_that_cannot_be_right_are_refused_in_one_line():
    for value in (3.0, -5.0, float("nan")):
        with pytest.raises(InputError, match=r"--cell-diameter .*at least 8 px"):
            check_given_diameter(value)
    assert (parse_cell_diameter(None), parse_cell_diameter("Auto"), parse_cell_diameter("64")) == (None, "auto", 64.0)
    for text, problem in (("big", "not a number of pixels, nor 'auto'"), ("-5", "at least 8 px")):
        with pytest.raises(InputError, match=f"--cell-diameter {text}: .*{problem}"):
            parse_cell_diameter(text)
    with pytest.raises(InputError, match=r"big\.png: 2040x1536 px: a cell diameter of 5000 px cannot be right"):
        check_cell_diameter(5000, (1536, 2040), "big.png")
    with pytest.raises(InputError, match=r"dot\.png: 1x1 px, too small to hold a cell"):
        check_cell_diameter(80, (1, 1), "dot.png")
    finder = CellScaleFinder(scale_selective_detector(), 80.0, 704, 0)
    with pytest.raises(InputError, match="too small"):
        finder(ArrayRegions("dot.png", np.zeros((1, 1, 3), np.uint8)))
    with pytest.raises(InputError, match="no cell found at any scale from 8 to 256 px"):
        finder(ArrayRegions("blank.png", np.full((300, 400, 3), 220, np.uint8)))
    assert MIN_CELL_DIAMETER == 8


def test_an_image_needing_too_many_tiles_is_refused():
    cfg = tiling_cfg(size=100, overlap=1.5)  # 200 px tiles at 40 px cells
    cfg.TEST.TILES.MAX_COUNT = 40
    predictor = TiledPredictor(lambda *a, **k: None, cfg, 0)
    _, rows, cols = predictor.grid("ok.png", (700, 900), 40.0)
    assert len(rows) * len(cols) <= 40
    with pytest.raises(InputError, match=r"huge\.png: cells of 40 px would take \d+ tiles of 200 px, more than "
                                         r"TEST\.TILES\.MAX_COUNT \(40\)"):
        predictor.grid("huge.png", (1400, 900), 40.0)


def test_cells_far_from_the_scale_they_were_found_at_are_said_out_loud():
    detections = scale_selective_detector()(discs((600, 800), 40.0, count=10), 40.0)
    assert scale_warning(CellScale(44.0, "frame size"), detections, 0) is None
    warning = scale_warning(CellScale(80.0, "frame size"), detections, 0)
    assert warning and "median diameter of 4" in warning and "predicted for 80 px cells" in warning


def test_predict_finds_the_frames_cells_at_other_sizes_and_in_a_mosaic_without_flags(segpc_mini, tmp_path):
    """The shipped model with no --cell-diameter on a bundled val frame resized 0.5x and 2x and on a 2x2
    mosaic of four val frames (4080x3072, tiled; the same size as the 2x frame, whose cells are twice
    as large): each finds the cells that the full-size frames give, within two, at an estimated scale."""
    paths = [p for p in image_files(str(segpc_mini / "x")) if p.endswith(("1998.jpg", "2011.jpg", "2034.jpg",
                                                                          "2048.jpg"))]
    frames = [cv2.imread(p) for p in paths]
    full = tmp_path / "full"
    full.mkdir()
    for path, frame in zip(paths, frames):
        cv2.imwrite(str(full / path.rsplit("/", 1)[-1].replace(".jpg", ".png")), frame)
    assert predict(["--input", str(full), "--output", str(tmp_path / "out_full")]) == 0
    with open(tmp_path / "out_full" / "summary.csv", newline="") as f:
        counts = {r["image"][:4]: int(r["cells"]) for r in csv.DictReader(f)}
    inputs = tmp_path / "x"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "half.png"), cv2.resize(frames[0], (1020, 768), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(inputs / "double.png"), cv2.resize(frames[0], (4080, 3072), interpolation=cv2.INTER_LINEAR))
    cv2.imwrite(str(inputs / "mosaic.png"), np.concatenate([np.concatenate(frames[:2], axis=1),
                                                            np.concatenate(frames[2:], axis=1)], axis=0))
    out = tmp_path / "out"
    assert predict(["--input", str(inputs), "--output", str(out)]) == 0
    with open(out / "summary.csv", newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    # (cells, diameter, how many cells may differ): in the mosaic, cells cut by a frame's edge lie against
    # another frame, where the fragment rule may join or drop them (35 cells in the 4 frames: 33 in the
    # mosaic with segpc-rmask-lite2, 32 with segpc-rmask-lite2-nucleus)
    expected = {"half.png": (counts["1998"], 160, 2), "double.png": (counts["1998"], 640, 2),
                "mosaic.png": (sum(counts.values()), 320, 3)}
    for name, (cells, diameter, spread) in expected.items():
        assert abs(int(rows[name]["cells"]) - cells) <= spread, (name, rows[name]["cells"], cells)
        assert rows[name]["cell_diameter_from"] == "estimated"
        assert float(rows[name]["cell_diameter_px"]) == pytest.approx(diameter, rel=0.15)
    report = json.loads((out / "report.json").read_text())
    assert {r["image"]: r["cell_diameter"]["from"] for r in report["per_image"]} == {
        "double.png": "estimated", "half.png": "estimated", "mosaic.png": "estimated"}


@pytest.mark.parametrize("argv,problem", [
    (["--cell-diameter", "3"], "error: --cell-diameter 3: the median cell diameter must be at least 8 px"),
    (["--cell-diameter", "-5"], "error: --cell-diameter -5: the median cell diameter must be at least 8 px"),
])
def test_predict_refuses_a_diameter_no_image_can_have_before_any_model(argv, problem, segpc_mini, tmp_path, capsys):
    out = tmp_path / "out"
    assert predict(["--input", str(segpc_mini / "x" / "2009.jpg"), "--output", str(out), *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(problem)
    assert not out.exists()


def test_predict_names_the_images_a_diameter_cannot_fit(segpc_mini, tmp_path, caplog):
    """A diameter larger than an image (5000 px in a 2040x1536 frame, 80 px in a 1x1 picture) is refused
    for that image, named with the reason; the run says so with exit 1 and writes what it could."""
    folder = tmp_path / "x"
    folder.mkdir()
    cv2.imwrite(str(folder / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(folder / "frame.png"), cv2.imread(str(segpc_mini / "x" / "2009.jpg")))
    for value, refused in (("5000", ["dot.png", "frame.png"]), ("100000", ["dot.png", "frame.png"]),
                           ("80", ["dot.png"])):
        out = tmp_path / f"out{value}"
        assert predict(["--input", str(folder), "--output", str(out), "--cell-diameter", value]) == 1
        assert "dot.png: 1x1 px, too small to hold a cell" in caplog.text
        if "frame.png" in refused:
            assert f"frame.png: 2040x1536 px: a cell diameter of {value} px cannot be right" in caplog.text
        report = json.loads((out / "report.json").read_text())
        assert sorted(item["image"].rsplit("/", 1)[-1] for item in report["not_read"]) == refused
        caplog.clear()


def test_a_full_size_nikon_frame_is_predicted_whole_at_its_known_scale(shared_segpc, tmp_path):
    """The bug of issue 30: a 2560x1920 frame was tiled (its 319.6 px cells make a 640 px tile 2557 image
    px) and each tile's size looked up as a frame size, refused. Now the frame fits one tile and its
    scale, decided once, is the Nikon microscope's."""
    frame = tmp_path / "x" / "108.jpg"
    frame.parent.mkdir()
    frame.write_bytes((REPO / "datasets" / "segpc_nikon" / "train" / "x" / "108.jpg").read_bytes())
    cfg = setup_inference(None, [], 0.5)
    assert TiledPredictor(build_predictor(cfg, 0), cfg, 0).grid(str(frame), (1920, 2560), 319.6) is None
    out = tmp_path / "out"
    assert predict(["--input", str(frame.parent), "--output", str(out)]) == 0
    with open(out / "summary.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["cell_diameter_px"], row["cell_diameter_from"]) == ("319.6", "frame size")
    assert int(row["cells"]) >= 3  # the frame has 4 annotated cells


def test_the_scale_search_sees_one_view_whatever_the_test_time_augmentation(monkeypatch):
    """make_submission.py (8 views by default) and predict.py (one) decide an image's scale alike: the
    search runs the bare detector, never the augmented one."""
    from detectron2_myeloma.engine.tta import CellTTA

    def refuse(self, batched_inputs):
        raise AssertionError("the scale search ran test-time augmentation")

    monkeypatch.setattr(CellTTA, "forward", refuse)
    cfg = setup_inference(None, ["TEST.AUG.ENABLED", True], 0.05)
    predictor = build_predictor(cfg, 0)
    assert isinstance(predictor.model, CellTTA)
    frame = cv2.imread(str(REPO / "datasets" / "segpc_mini" / "train" / "x" / "2034.jpg"))[300:1000, 500:1500]
    scale = build_scale_finder(predictor, cfg, 0)(ArrayRegions("crop.png", frame))
    assert scale.source == "estimated" and 150 < scale.diameter < 400
