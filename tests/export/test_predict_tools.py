"""tools/predict.py and tools/make_submission.py end to end on a bundled image with a freshly initialised
model (random weights, so the detections are garbage: the tests check file structure), plus the
prediction tables of a cell classifier's fields."""
import csv
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import Metadata
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from pycocotools.coco import COCO
from shapely.geometry import shape
from testutils import unwritable_folder, write_tiny_classifier

from detectron2_myeloma import add_myeloma_config
from detectron2_myeloma.data.regions import ArrayRegions
from detectron2_myeloma.data.segpc_format import (
    CYTOPLASM_VALUE,
    NUCLEUS_VALUE,
    read_segpc_mask,
    read_submission,
)
from detectron2_myeloma.engine.defaults import setup_inference
from detectron2_myeloma.engine.predictor import build_predictor, build_scale_finder
from detectron2_myeloma.export.predictions import CELL_COLUMNS, RESULTS_JSON, SUMMARY_COLUMNS, PredictionWriter
from detectron2_myeloma.structures import CellDetections
from detectron2_myeloma.utils.atomic import OUTPUT_MARKER
from cli import tool_main

make_submission = tool_main("make_submission")
predict = tool_main("predict")

REPO = Path(__file__).resolve().parents[2]
PROJECT_CONFIG = REPO / "configs" / "SegPC" / "mask_rcnn_lite2_fpn.yaml"
IMAGE = REPO / "datasets" / "segpc_mini" / "train" / "x" / "2009.jpg"


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
    """A small random-weight Mask R-CNN, 256-pixel test scale, everything scored, 3 detections."""
    cfg = get_cfg()
    add_myeloma_config(cfg)
    if PROJECT_CONFIG.exists():
        cfg.merge_from_file(str(PROJECT_CONFIG))
        cfg.MODEL.TIMM.PRETRAINED = False
    else:
        cfg.merge_from_list([
            "MODEL.MASK_ON", True, "MODEL.BACKBONE.NAME", "build_resnet_fpn_backbone",
            "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
            "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
            "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"],
            "MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64], [128], [256], [512]],
            "MODEL.RPN.IN_FEATURES", ["p2", "p3", "p4", "p5", "p6"],
            "MODEL.ROI_HEADS.NAME", "StandardROIHeads",
            "MODEL.ROI_HEADS.IN_FEATURES", ["p2", "p3", "p4", "p5"],
            "MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead", "MODEL.ROI_BOX_HEAD.NUM_FC", 2,
            "MODEL.ROI_MASK_HEAD.NAME", "MaskRCNNConvUpsampleHead",
            "DATASETS.TEST", ("segpc_mini_val",),
        ])
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", 1,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "TEST.DETECTIONS_PER_IMAGE", 3,
        "INPUT.MIN_SIZE_TEST", 256, "INPUT.MAX_SIZE_TEST", 512,
    ])
    folder = tmp_path_factory.mktemp("config")
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, folder / "random.pth")
    cfg.MODEL.WEIGHTS = str(folder / "random.pth")
    (folder / "model.yaml").write_text(cfg.dump())
    return str(folder / "model.yaml")


def image_folder(root: Path, big_bmp: bool) -> Path:
    """The bundled image (as a 2560x1920 Nikon-size BMP when ``big_bmp``) beside an unreadable file and
    a JPEG cut short (OpenCV decodes that one as a half-grey picture, with no word of which file)."""
    root.mkdir()
    if big_bmp:
        cv2.imwrite(str(root / "2009.bmp"), cv2.resize(cv2.imread(str(IMAGE)), (2560, 1920)))
    else:
        shutil.copy(IMAGE, root / "2009.jpg")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    data = IMAGE.read_bytes()
    (root / "half.jpg").write_bytes(data[: len(data) // 2])
    return root


def test_make_submission_from_a_model(config_file, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    torch.manual_seed(0)
    folder = image_folder(tmp_path / "x", big_bmp=False)
    submission, masks_out = tmp_path / "submission.txt", tmp_path / "masks"
    code = make_submission(["--config-file", config_file, "--input", str(folder), "--output", str(submission),
                            "--masks-out", str(masks_out), "--score-threshold", "0", "--max-instances", "3",
                            "--no-tta"])  # a random model's masks, averaged over views, are mostly empty
    assert code != 0 and "broken.png" in caplog.text and f"{folder / 'half.jpg'}: unreadable, truncated" in caplog.text
    assert "test-time augmentation" not in caplog.text
    assert "this model predicts no nucleus: each cell's nucleus is estimated" in caplog.text
    lines = read_submission(str(submission))  # raises on any malformed or empty pixel list
    assert list(lines) == ["2009"]
    instances = lines["2009"]
    assert 1 <= len(instances) <= 3
    numbers = range(1, len(instances) + 1)
    assert sorted(p.name for p in masks_out.glob("*.bmp")) == [f"2009_{k}.bmp" for k in numbers]
    for k in numbers:
        mask = read_segpc_mask(str(masks_out / f"2009_{k}.bmp"))
        assert mask.shape == (1536, 2040)
        assert set(np.unique(mask)) == {0, CYTOPLASM_VALUE, NUCLEUS_VALUE}


def test_predict_outputs(config_file, tmp_path, caplog):
    torch.manual_seed(0)
    folder = image_folder(tmp_path / "x", big_bmp=True)
    out = tmp_path / "out"
    out.mkdir()  # an earlier run's results, replaced whole: no stale overlay is left beside the new ones
    (out / OUTPUT_MARKER).write_text("predict")
    (out / "old_overlay.png").write_bytes(b"stale")
    assert predict(["--config-file", config_file, "--input", str(folder), "--output", str(out),
                    "--score-threshold", "0", "--overwrite"]) != 0
    assert "broken.png" in caplog.text and f"{folder / 'half.jpg'}: unreadable, truncated" in caplog.text
    assert sorted(p.name for p in out.glob("*.png")) == ["2009_overlay.png", "2009_splash.png"]
    for kind in ("overlay", "splash"):
        assert cv2.imread(str(out / f"2009_{kind}.png")).shape == (960, 1280, 3)  # 2560x1920 at 0.5

    results = json.loads((out / RESULTS_JSON).read_text())
    assert 1 <= len(results) <= 3
    assert all(r["image_id"] == 1 and r["file_name"] == "2009.bmp" and r["category_id"] == 1 for r in results)
    assert all(isinstance(r["segmentation"]["counts"], str) and r["segmentation"]["size"] == [1920, 2560]
               for r in results)
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "file_name": "2009.bmp", "height": 1920, "width": 2560}],
                  "annotations": [], "categories": [{"id": 1, "name": "cell"}]}
    gt.createIndex()
    assert len(gt.loadRes(results).getAnnIds()) == len(results)

    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == SUMMARY_COLUMNS and len(rows) == 1
    assert rows[0]["image"] == "2009.bmp" and int(rows[0]["cells"]) == len(results)
    assert rows[0]["myeloma"] == rows[0]["non_myeloma"] == ""  # no classifier fields
    with open(out / "cells.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    assert list(cells[0]) == CELL_COLUMNS and len(cells) == len(results)
    assert [float(c["score"]) for c in cells] == pytest.approx([r["score"] for r in results], abs=1e-4)
    # QuPath: one Feature per cell, the outline of its COCO mask
    collection = json.loads((out / "2009.geojson").read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(results)
    for feature, result in zip(collection["features"], results):
        mask = mask_util.decode(result["segmentation"]).astype(bool)
        assert shape(feature["geometry"]).area == pytest.approx(mask.sum(), rel=0.02)
        assert feature["properties"]["measurements"]["Cell area px"] == mask.sum()
        assert feature["properties"]["objectType"] == "detection" and "classification" not in feature["properties"]


def test_predictor_gives_the_model_the_original_image(config_file):
    """... in INPUT.FORMAT for the cell classifier, which must classify the class the outputs call cells."""
    classify_class_1 = ["MODEL.POST_HOOKS", "['CellClassifierHook']", "MODEL.CELL_CLASSIFIER.CELL_CLASS", "1"]
    with pytest.raises(ValueError, match="CELL_CLASS is 1 but the cell class of the class names is 0"):
        build_predictor(setup_inference(config_file, classify_class_1, 0.5), cell_class=0)
    cfg = setup_inference(config_file, [], 0.5)
    predictor = build_predictor(cfg, cell_class=0)
    seen = []
    predictor.model.forward = lambda batched_inputs: seen.extend(batched_inputs) or [{}]
    image = cv2.imread(str(IMAGE))
    predictor(image)
    inputs, = seen
    assert (inputs["height"], inputs["width"]) == (1536, 2040)
    in_format = image[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else image
    assert inputs["original_image"].dtype == torch.uint8
    assert torch.equal(inputs["original_image"], torch.from_numpy(in_format.copy()).permute(2, 0, 1))
    assert inputs["image"].shape == (3, 256, 340)  # INPUT.MIN_SIZE_TEST 256


def model_input_shape(predictor, image: np.ndarray, diameter: float) -> tuple:
    seen = []
    predictor.model.forward = lambda batched_inputs: seen.extend(batched_inputs) or [{}]
    predictor(image, diameter)
    return tuple(seen[0]["image"].shape)


def test_predictor_resizes_by_the_cell_scale_decided_for_the_image(config_file):
    """With INPUT.CELL_DIAMETER.TEST, a frame is scaled so that its cells span the target: by the known
    diameter of its frame size (320 px in a full-size Olympus frame), or by --cell-diameter; the
    predictor itself takes the diameter it is given and refuses to guess one."""
    cfg = setup_inference(config_file, ["INPUT.CELL_DIAMETER.TEST", 128.0], 0.5)
    predictor = build_predictor(cfg, 0)
    frame = cv2.imread(str(IMAGE))
    scale = build_scale_finder(predictor, cfg, 0)(ArrayRegions(str(IMAGE), frame))
    assert (scale.diameter, scale.source) == (319.9, "frame size")
    assert model_input_shape(predictor, frame, scale.diameter) == (3, round(1536 * 128 / 319.9),
                                                                   round(2040 * 128 / 319.9))
    unknown = np.zeros((100, 200, 3), np.uint8)
    given = build_scale_finder(predictor, cfg, 0, 64.0)(ArrayRegions("unknown.png", unknown))
    assert (given.diameter, given.source) == (64.0, "given")
    assert model_input_shape(predictor, unknown, given.diameter) == (3, 200, 400)
    with pytest.raises(ValueError, match="give the image's cell_diameter"):
        predictor(unknown)


def test_a_config_without_weights_is_refused(config_file, tmp_path, capsys):
    """Random heads find nothing, silently: a config with an empty MODEL.WEIGHTS is bad input."""
    out = tmp_path / "out"
    assert predict(["--config-file", config_file, "--input", str(IMAGE), "--output", str(out),
                    "MODEL.WEIGHTS", ""]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {config_file}: MODEL.WEIGHTS is empty")
    assert not out.exists()


@pytest.mark.parametrize("tool", [predict, make_submission])
def test_missing_or_empty_input_is_one_line_before_any_model(tool, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for name, problem in (("nowhere", "no such file or folder"), ("empty", "no images in it")):
        argv = ["--input", str(tmp_path / name), "--output", str(tmp_path / "out"),
                "--config-file", str(tmp_path / "never_read.yaml")]  # the config is not even opened
        assert tool(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {tmp_path / name}: {problem}" + (" (.bmp, .png, .jpg, .jpeg, .tif, .tiff)"
                                                                  if name == "empty" else "")]
    assert not (tmp_path / "out").exists()


def test_a_used_output_folder_is_refused_before_any_model(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "2009_overlay.png").write_bytes(b"an earlier run")
    assert predict(["--input", str(IMAGE), "--output", str(out), "--config-file", str(tmp_path / "never.yaml")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {out}: output folder is not empty (an earlier run's results?): choose a new folder or pass "
        "--overwrite to replace it"]
    assert predict(["--input", str(IMAGE), "--output", str(out), "--overwrite"]) == 1
    assert "not a folder this project wrote" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["2009_overlay.png"]


@pytest.mark.parametrize("opts,message", [
    (["MODEL.WEIGHTS", "no/such.pth"], "MODEL.WEIGHTS no/such.pth: no such file"),
    (["MODEL.ROI_HEADS.SCORE_TRESH_TEST", "0.3"], "Non-existent key: MODEL.ROI_HEADS.SCORE_TRESH_TEST"),
    (["INPUT.MIN_SIZE_TEST", "big"], "Type mismatch"),
    (["MODEL.WEIGHTS"], "Override list has odd length"),
])
def test_config_mistakes_are_one_line(config_file, tmp_path, capsys, opts, message):
    assert predict(["--config-file", config_file, "--input", str(IMAGE), "--output", str(tmp_path / "out"),
                    *opts]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_an_image_whose_cell_size_cannot_be_found_is_reported_and_the_rest_predicted(tmp_path, caplog):
    """The shipped model on a frame and on a flat grey picture, which shows no cell at any scale: the
    frame is predicted, the picture named with the reason, exit 1."""
    folder = tmp_path / "x"
    folder.mkdir()
    shutil.copy(IMAGE, folder / "2009.jpg")
    cv2.imwrite(str(folder / "odd.png"), np.full((300, 400, 3), 200, np.uint8))
    out = tmp_path / "out"
    assert predict(["--input", str(folder), "--output", str(out)]) == 1
    assert "odd.png: no cell found at any scale from 8 to 256 px: give the median cell diameter" in caplog.text
    with open(out / "summary.csv", newline="") as f:
        assert [r["image"] for r in csv.DictReader(f)] == ["2009.jpg"]
    report = json.loads((out / "report.json").read_text())
    assert [item["image"] for item in report["not_read"]] == [str(folder / "odd.png")]


def classifier_opts(path: Path) -> list:
    return ["MODEL.POST_HOOKS", "['CellClassifierHook']", "MODEL.CELL_CLASSIFIER.WEIGHTS", str(path)]


def test_tools_with_the_cell_classifier(config_file, tmp_path):
    """predict.py labels every cell and writes the labels; make_submission.py with KEEP_NON_MYELOMA
    False submits only the cells above the classifier's threshold (same seed: same random detector)."""
    (tmp_path / "x").mkdir()
    shutil.copy(IMAGE, tmp_path / "x")
    out = tmp_path / "out"
    classifier = classifier_opts(write_tiny_classifier(tmp_path / "a.pth"))
    torch.manual_seed(0)
    assert predict(["--config-file", config_file, "--input", str(tmp_path / "x"), "--output", str(out),
                    "--score-threshold", "0", *classifier]) == 0
    results = json.loads((out / RESULTS_JSON).read_text())
    assert len(results) == 3 and all(r["myeloma_label"] == int(r["myeloma_prob"] > 0.5) for r in results)
    with open(out / "summary.csv", newline="") as f:
        summary, = csv.DictReader(f)
    myeloma = sum(r["myeloma_label"] for r in results)
    assert (int(summary["myeloma"]), int(summary["non_myeloma"])) == (myeloma, len(results) - myeloma)
    with open(out / "cells.csv", newline="") as f:
        assert [int(c["myeloma_label"]) for c in csv.DictReader(f)] == [r["myeloma_label"] for r in results]

    median = float(np.median([r["myeloma_prob"] for r in results]))  # 1 of the 3 cells is above
    # Written before seeding: writing a classifier draws from the global generator too.
    classifier = classifier_opts(write_tiny_classifier(tmp_path / "b.pth", threshold=median))
    torch.manual_seed(0)
    submission = tmp_path / "submission.txt"
    assert make_submission([
        "--config-file", config_file, "--input", str(tmp_path / "x"), "--output", str(submission),
        "--score-threshold", "0", "--max-instances", "3", "--no-tta", *classifier,  # predict.py's masks
        "MODEL.CELL_CLASSIFIER.KEEP_NON_MYELOMA", "False"]) == 0
    assert len(read_submission(str(submission))["2009"]) == 1


def test_classifier_fields_fill_the_myeloma_columns(tmp_path):
    """Instances with ``pred_cell_labels`` / ``pred_cell_probs`` (added by the cell classifier post-hook,
    which leaves nuclei unclassified: label -1, probability NaN)."""
    image = np.full((120, 160, 3), 200, np.uint8)
    masks = torch.zeros(4, 120, 160, dtype=torch.bool)
    masks[0, 10:30, 10:30] = masks[1, 50:60, 50:70] = masks[2, 80:110, 100:150] = True
    masks[3, 85:95, 110:120] = True
    instances = Instances((120, 160))
    instances.pred_masks = masks
    instances.pred_boxes = Boxes(torch.tensor([[10.0, 10, 30, 30], [50, 50, 70, 60], [100, 80, 150, 110],
                                               [110, 85, 120, 95]]))
    instances.scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    instances.pred_classes = torch.tensor([0, 0, 0, 1])
    instances.pred_cell_labels = torch.tensor([1, 0, 1, -1])
    instances.pred_cell_probs = torch.tensor([0.95, 0.2, 0.6, float("nan")])
    metadata = Metadata(name="test", thing_classes=["cell", "nucleus"])
    with PredictionWriter(str(tmp_path), metadata, cell_class=0, nucleus_class=1, geojson={}) as writer:
        writer.add(1, "slide.png", ArrayRegions("slide.png", image), CellDetections.from_instances(instances))
    with open(tmp_path / "summary.csv", newline="") as f:
        summary, = csv.DictReader(f)
    assert (summary["cells"], summary["myeloma"], summary["non_myeloma"]) == ("3", "2", "1")
    assert float(summary["mean_area"]) == pytest.approx((400 + 200 + 1500) / 3, abs=0.1)
    assert float(summary["median_area"]) == 400
    with open(tmp_path / "cells.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    assert [c["myeloma_label"] for c in cells] == ["1", "0", "1", ""]
    assert [c["myeloma_prob"] for c in cells] == ["0.9500", "0.2000", "0.6000", ""]
    results = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert [r.get("myeloma_label") for r in results] == [1, 0, 1, None]
    assert [r.get("myeloma_prob") for r in results] == pytest.approx([0.95, 0.2, 0.6, None])
    splash = cv2.imread(str(tmp_path / "slide_splash.png"))
    assert splash.shape == (120, 160, 3)
    # the overlay colours cells by the classifier's answer: myeloma red, other green (BGR channels)
    overlay = cv2.imread(str(tmp_path / "slide_overlay.png")).astype(int)
    assert overlay[20, 20, 2] > overlay[20, 20, 1] + 40  # label 1
    assert overlay[54, 60, 1] > overlay[54, 60, 2] + 40  # label 0
    features = json.loads((tmp_path / "slide.geojson").read_text())["features"]
    assert [f["properties"]["classification"]["name"] for f in features] == ["Myeloma", "Other cell", "Myeloma"]
    assert [f["properties"]["measurements"].get("Nucleus area px") for f in features] == [None, None, 100]


@pytest.mark.parametrize("tool", [predict, make_submission])
def test_a_damaged_weights_file_is_one_line_naming_it(tool, config_file, tmp_path, capsys):
    """Random bytes as MODEL.WEIGHTS or MODEL.CELL_CLASSIFIER.WEIGHTS (PyTorch raises an unpickling error
    advising weights_only=False), or a detector checkpoint as the classifier's: one line, nothing written.
    (make_submission.py runs the classifier only where it drops non-myeloma cells.)"""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    detector = Path(config_file).parent / "random.pth"
    out = tmp_path / "out"
    damaged = f"{bad}: not a readable PyTorch checkpoint (UnpicklingError)"
    runs = [] if tool is predict else ["MODEL.CELL_CLASSIFIER.KEEP_NON_MYELOMA", "False"]
    for opts, message in ((["MODEL.WEIGHTS", str(bad)], damaged), (classifier_opts(bad) + runs, damaged),
                          (classifier_opts(detector) + runs, f"{detector}: not a cell classifier checkpoint")):
        assert tool(["--config-file", config_file, "--input", str(IMAGE), "--output", str(out), *opts]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth"]


def test_an_unwritable_output_is_one_line_before_any_model(tmp_path, capsys):
    never = str(tmp_path / "never_read.yaml")  # the config is not even opened
    with unwritable_folder(tmp_path / "locked") as locked:
        for tool, outputs in ((predict, ["--output", str(locked / "out")]),
                              (make_submission, ["--output", str(locked / "submission.txt")]),
                              (make_submission, ["--output", str(tmp_path / "submission.txt"),
                                                 "--masks-out", str(locked / "masks")])):
            assert tool(["--input", str(IMAGE), "--config-file", never, *outputs]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"error: {outputs[-1]}: cannot write in {locked}: "), err
        assert list(locked.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["locked"]


@pytest.mark.parametrize("tool", [predict, make_submission])
def test_images_in_subfolders_are_pointed_to_or_taken_with_recursive(tool, tmp_path, capsys):
    """A dataset's root for its x/ is one line saying where the images are; with --recursive, two
    images of the same name (their outputs' name) in two subfolders are one line naming both."""
    root = IMAGE.parents[1]  # datasets/segpc_mini/train: x/ and y/
    argv = ["--output", str(tmp_path / "out"), "--config-file", str(tmp_path / "never_read.yaml")]
    assert tool(["--input", str(root), *argv]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {root}: holds no images, but its subfolders x/, y/ hold 104: pass one of them, or add "
        "--recursive"]
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(IMAGE, tmp_path / "in" / sub)
    assert tool(["--input", str(tmp_path / "in"), "--recursive", *argv]) == 1
    first, second = tmp_path / "in" / "a" / IMAGE.name, tmp_path / "in" / "b" / IMAGE.name
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {second} and {first} share the image id '2009', which names their outputs"]
    assert not (tmp_path / "out").exists()


def test_make_submission_recursive_takes_the_subfolders_images(config_file, tmp_path):
    for name in ("a/2009.jpg", "b/c/other.jpg"):
        (tmp_path / "in" / name).parent.mkdir(parents=True)
        shutil.copy(IMAGE, tmp_path / "in" / name)
    submission = tmp_path / "submission.txt"
    assert make_submission(["--config-file", config_file, "--input", str(tmp_path / "in"), "--recursive",
                            "--output", str(submission), "--max-instances", "1"]) == 0
    assert list(read_submission(str(submission))) == ["2009", "other"]


def test_a_config_that_contradicts_a_shipped_models_own_is_refused(tmp_path, capsys):
    """A short name brings its config: with another config that resizes differently the shipped model
    would find other cells (37 instead of 29 on 4 frames, issue 30), so it is refused in one line naming
    the key; the model's own config, or the key settled on the command line, is taken."""
    config = str(REPO / "configs" / "SegPC" / "rmask_rcnn_lite2_fpn.yaml")
    out = tmp_path / "out"
    assert predict(["--config-file", config, "--input", str(IMAGE), "--output", str(out),
                    "MODEL.WEIGHTS", "segpc-rmask-lite2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MODEL.WEIGHTS segpc-rmask-lite2 is a shipped model with its own config" in err[0]
    assert "INPUT.CELL_DIAMETER.TEST 0.0 (model: 80.0)" in err[0] and not out.exists()
    settled = setup_inference(config, ["MODEL.WEIGHTS", "segpc-rmask-lite2", "INPUT.CELL_DIAMETER.TEST", 80.0], 0.5)
    own = setup_inference(str(REPO / "configs" / "SegPC" / "rmask_rcnn_lite2_fpn_d80.yaml"),
                          ["MODEL.WEIGHTS", "segpc-rmask-lite2"], 0.5)
    assert settled.INPUT.CELL_DIAMETER.TEST == own.INPUT.CELL_DIAMETER.TEST == 80.0


def test_a_checkpoint_means_no_imagenet_weights_are_read(monkeypatch):
    """The shipped model's checkpoint replaces every backbone weight: the tools do not read the
    packaged ImageNet file first (it was read, then overwritten, at every start)."""
    from detectron2_myeloma.modeling import timm_backbone

    def refuse(*args, **kwargs):
        raise AssertionError("ImageNet weights read")

    monkeypatch.setattr(timm_backbone, "_load_imagenet_weights", refuse)
    cfg = setup_inference(None, [], 0.5)
    assert not cfg.MODEL.TIMM.PRETRAINED
    build_predictor(cfg, cell_class=0)
