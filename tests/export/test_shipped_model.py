"""tools/predict.py and tools/make_submission.py without --config-file predict with the shipped model: it
finds and outlines the cells of a full-size val frame it never saw."""
import csv
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
from cli import tool_main
from detectron2.data import DatasetCatalog

from detectron2_myeloma.data.segpc_format import NUCLEUS_VALUE, read_segpc_mask, read_submission
from detectron2_myeloma.export.predictions import RESULTS_JSON

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
    assert len(read_submission(str(tmp_path / "submission.txt"))["2011"]) >= 0.8 * len(truth)


def test_predict_and_make_submission_give_the_same_cells(tmp_path):
    """One inference path: the cells make_submission.py submits (one view, its --masks-out files) are
    predict.py's cells, pixel for pixel and in score order, each with the same nucleus; on a SegPC frame
    and on a crop of another size, whose cell scale both tools estimate alike."""
    record = next(r for r in DatasetCatalog.get("segpc_mini_val") if r["image_id"] == "1998")
    folder = tmp_path / "x"
    folder.mkdir()
    shutil.copy(record["file_name"], folder)
    cv2.imwrite(str(folder / "crop.png"), cv2.imread(record["file_name"])[200:1100, 300:1500])
    assert predict(["--input", str(folder), "--output", str(tmp_path / "out"), "--no-geojson"]) == 0
    assert make_submission(["--input", str(folder), "--output", str(tmp_path / "submission.txt"), "--no-tta",
                            "--score-threshold", "0.5", "--masks-out", str(tmp_path / "masks")]) == 0
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
