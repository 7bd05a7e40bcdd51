"""tools/predict.py and tools/make_submission.py without --config-file predict with the shipped model: it
finds and outlines the cells of a full-size val frame it never saw."""
import csv
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
from cli import tool_main
from detectron2.data import DatasetCatalog

from detectron2_myeloma.model_zoo import default_inference
from detectron2_myeloma.data.segpc_format import NUCLEUS_VALUE, read_segpc_mask, read_submission
from detectron2_myeloma.export.predictions import RESULTS_JSON

REPO = Path(__file__).resolve().parents[2]
predict = tool_main("predict")
make_submission = tool_main("make_submission")


def rle(segmentation: dict) -> dict:
    counts = segmentation["counts"]
    return {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}


def test_predict_without_a_config_uses_the_shipped_model(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    record = next(r for r in DatasetCatalog.get("segpc_mini_val") if r["image_id"] == "2011")
    folder = tmp_path / "x"
    folder.mkdir()
    shutil.copy(record["file_name"], folder)
    assert predict(["--input", str(folder), "--output", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / RESULTS_JSON).read_text())
    found = [rle(r["segmentation"]) for r in results if r["category_id"] == 1]
    truth = [rle(a["segmentation"]) for a in record["annotations"]]
    iou = mask_util.iou(truth, found, [0] * len(found)) if found else np.zeros((len(truth), 1))
    best = iou.max(axis=1)
    assert (best > 0.5).mean() >= 0.8, best  # most cells found, each by a mask that overlaps it well
    assert best.mean() > 0.7, best

    assert "test-time augmentation" not in caplog.text  # predict.py: one view
    assert make_submission(["--input", str(folder), "--output", str(tmp_path / "submission.txt")]) == 0
    assert "test-time augmentation" in caplog.text  # make_submission.py's default
    assert "predicts no nucleus" not in caplog.text  # the shipped model outlines each cell's nucleus
    assert "not run: a submission holds no labels" in caplog.text  # the classifier's labels
    assert "cell classifier" in caplog.text.split("not run: a submission")[0].splitlines()[-1]
    assert len(read_submission(str(tmp_path / "submission.txt"))["2011"]) >= 0.8 * len(truth)


def test_predict_and_make_submission_give_the_same_cells(tmp_path):
    """One inference path: the cells make_submission.py submits (one view, fragments dropped, its
    --masks-out files) are predict.py's cells, pixel for pixel and in score order, each with the same
    nucleus; on a SegPC frame and on a crop of another size, whose cell scale both tools estimate alike."""
    record = next(r for r in DatasetCatalog.get("segpc_mini_val") if r["image_id"] == "1998")
    folder = tmp_path / "x"
    folder.mkdir()
    shutil.copy(record["file_name"], folder)
    cv2.imwrite(str(folder / "crop.png"), cv2.imread(record["file_name"])[200:1100, 300:1500])
    assert predict(["--input", str(folder), "--output", str(tmp_path / "out"), "--no-geojson"]) == 0
    assert make_submission(["--input", str(folder), "--output", str(tmp_path / "submission.txt"), "--no-tta",
                            "--score-threshold", "0.5", "--masks-out", str(tmp_path / "masks"),
                            "TEST.FRAGMENT_MAX_INSIDE", "0.75"]) == 0  # predict.py's settings
    results = json.loads((tmp_path / "out" / RESULTS_JSON).read_text())
    with open(tmp_path / "out" / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for stem in ("1998", "crop"):
        mine = [i for i, r in enumerate(results) if Path(r["file_name"]).stem == stem]
        order = sorted(mine, key=lambda i: -results[i]["score"])
        submitted = sorted((tmp_path / "masks").glob(f"{stem}_*.bmp"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        assert len(submitted) == len(order) > 2, stem
        for path, i in zip(submitted, order):
            mask = read_segpc_mask(str(path))
            assert np.array_equal(mask > 0, mask_util.decode(rle(results[i]["segmentation"])).astype(bool)), path.name
            assert np.count_nonzero(mask == NUCLEUS_VALUE) == int(rows[i]["nucleus_area"]), path.name


def test_evaluation_scores_the_cells_predict_writes(tmp_path):
    """One inference path: ``train_net.py --eval-only`` evaluates the detections ``predict.py`` writes
    for the same frames (the 4 full-size val frames), mask for mask and score for score: same cell
    scale, same fragment rule, same post-hooks."""
    records = DatasetCatalog.get("segpc_mini_val")
    folder = tmp_path / "x"
    folder.mkdir()
    for record in records:
        shutil.copy(record["file_name"], folder)
    config, opts = default_inference()
    done = subprocess.run([sys.executable, "tools/train_net.py", "--eval-only", "--config-file", config, *map(str, opts),
                           "DATASETS.TEST", "('segpc_mini_val',)", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05",
                           "OUTPUT_DIR", str(tmp_path / "eval")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert predict(["--input", str(folder), "--output", str(tmp_path / "out"), "--no-geojson",
                    "--score-threshold", "0.05"]) == 0  # low: the fragments the rule drops score low
    evaluated = json.loads((tmp_path / "eval" / "inference" / "segpc_mini_val" / "coco_instances_results.json")
                           .read_text())
    predicted = json.loads((tmp_path / "out" / RESULTS_JSON).read_text())
    stems = {record["image_id"]: Path(record["file_name"]).stem for record in records}
    for image_id, stem in stems.items():
        mine = sorted((r for r in evaluated if str(r["image_id"]) == image_id), key=lambda r: -r["score"])
        theirs = sorted((r for r in predicted if Path(r["file_name"]).stem == stem), key=lambda r: -r["score"])
        assert len(mine) == len(theirs) > 2, image_id
        for a, b in zip(mine, theirs):
            assert abs(a["score"] - b["score"]) < 1e-6, image_id
            assert np.array_equal(mask_util.decode(rle(a["segmentation"])), mask_util.decode(rle(b["segmentation"]))), \
                image_id


def test_a_submission_keeps_the_fragments_predict_drops(tmp_path):
    """make_submission.py keeps fragments (KEEP_FRAGMENTS: extra instances cost nothing in the SegPC
    score): on the 4 val frames it submits more instances than with predict.py's fragment rule."""
    folder = tmp_path / "x"
    folder.mkdir()
    for record in DatasetCatalog.get("segpc_mini_val"):
        shutil.copy(record["file_name"], folder)
    counts = []
    for opts in ([], ["TEST.FRAGMENT_MAX_INSIDE", "0.75"]):
        output = tmp_path / f"submission{len(counts)}.txt"
        assert make_submission(["--input", str(folder), "--output", str(output), "--no-tta", *opts]) == 0
        counts.append(sum(len(cells) for cells in read_submission(str(output)).values()))
    assert counts[0] > counts[1], counts
