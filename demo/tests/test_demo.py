"""`make demo` end to end with a 2-iteration detector and a 1-epoch classifier (slow)."""
import json
import subprocess
import sys

import pytest

from detectron2_myeloma.data.builtin import SEGPC_MINI_VAL_IDS
from detectron2_myeloma.data.segpc_format import read_submission


@pytest.mark.slow
def test_demo_writes_every_result(tmp_path):
    out = tmp_path / "demo"
    demo = subprocess.run([sys.executable, "demo/demo.py", "--output", str(out), "--iters", "2",
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
