"""`make demo` end to end with the shipped models, and `make demo-train` with a 2-iteration detector and a
1-epoch classifier (both slow)."""
import json
import subprocess
import sys

import pytest

from detectron2_myeloma.data.datasets.builtin import SEGPC_MINI_VAL_IDS
from detectron2_myeloma.data.segpc_format import read_submission


@pytest.mark.slow
def test_demo_with_the_shipped_models(tmp_path):
    out = tmp_path / "demo"
    demo = subprocess.run([sys.executable, "demo/demo.py", "--output", str(out)], capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr[-3000:]
    headline = json.loads((out / "headline.json").read_text())
    score = json.loads((out / "score.json").read_text())
    assert headline["SegPC mIoU (val submission)"] == score["metrics"]["mIoU"]
    assert set(score["per_image"]) == set(SEGPC_MINI_VAL_IDS)
    # a trained model, not random heads: most of the 26 annotated cells are found and outlined
    assert headline["annotated cells"] == 26 and score["metrics"]["mIoU"] > 0.7
    evaluation = json.loads((out / "detector" / "inference" / "evaluation.json").read_text())
    assert headline["segm AP (%)"] == pytest.approx(evaluation["segm"]["AP"]) and evaluation["segm"]["AP"] > 40
    assert headline["detected: cells"] >= 20
    # the same frames as one mosaic, tile by tile: about the same cells (frame edges see new neighbours)
    assert abs(headline["detected in the mosaic: cells"] - headline["detected: cells"]) <= 0.1 * headline["detected: cells"]
    for folder in ("predictions", "mosaic"):
        assert (out / folder / "report.html").is_file() and json.loads((out / folder / "report.json").read_text())["cells"]
    assert len(json.loads((out / "mosaic" / "val_mosaic_2x2.geojson").read_text())["features"]) >= 20
    assert "$ python tools/predict.py --input" in demo.stdout  # the shipped model needs no --config-file
    assert not (out / "detector" / "model_final.pth").exists()  # nothing was trained


@pytest.mark.slow
def test_demo_train_writes_every_result(tmp_path):
    out = tmp_path / "demo"
    demo = subprocess.run([sys.executable, "demo/demo.py", "--output", str(out), "--train", "--iters", "2",
                           "--classifier-epochs", "1"], capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr[-3000:]
    headline = json.loads((out / "headline.json").read_text())
    score = json.loads((out / "score.json").read_text())
    assert headline["SegPC mIoU (val submission)"] == score["metrics"]["mIoU"]
    assert set(score["per_image"]) == set(SEGPC_MINI_VAL_IDS)
    assert set(read_submission(str(out / "submission.txt"))) == set(SEGPC_MINI_VAL_IDS)
    classifier = json.loads((out / "classifier" / "metrics.json").read_text())
    assert headline["classifier balanced accuracy"] == classifier["balanced_accuracy"]
    evaluation = json.loads((out / "detector" / "inference" / "evaluation.json").read_text())
    for name, task in (("segm AP (%)", "segm"), ("bbox AP (%)", "bbox")):
        assert headline[name] == pytest.approx(evaluation[task]["AP"], nan_ok=True)
    for image_id in SEGPC_MINI_VAL_IDS:
        assert (out / "predictions" / f"{image_id}_overlay.png").is_file()
    assert (out / "classifier" / "confusion_matrix.png").is_file()
    assert (out / "detector" / "model_final.pth").is_file()
    assert "Headline numbers" in demo.stdout and "$ python tools/train_net.py --config-file" in demo.stdout
