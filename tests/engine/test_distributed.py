"""tools/train_net.py --num-gpus 2 on the CPU: two gloo processes train, checkpoint, resume and evaluate,
and their losses fall as a one-process run's on the same total batch do. This is the path a user's
multi-GPU and multi-machine runs take (Detectron2's ``launch``)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The shipped config made small (the structure stays): 224 px crops of the bundled training images,
# narrow FPN and heads, a constant learning rate after 5 warm-up iterations.
SMALL = [
    "INPUT.MIN_SIZE_TRAIN", "(256,)", "INPUT.MAX_SIZE_TRAIN", "352", "INPUT.CROP.SIZE", "[224, 224]",
    "INPUT.MIN_SIZE_TEST", "256", "INPUT.MAX_SIZE_TEST", "352",
    "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.ROI_MASK_HEAD.CONV_DIM", "64", "MODEL.ROI_BOX_HEAD.FC_DIM", "256",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.004", "SOLVER.WARMUP_ITERS", "5", "SOLVER.STEPS", "()",
    "SOLVER.CHECKPOINT_PERIOD", "20", "TEST.EVAL_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0", "SEED", "1",
    "MODEL.DEVICE", "cpu",
]


def train(output: Path, processes: int, max_iter: int, resume: bool = False) -> None:
    command = [sys.executable, "tools/train_net.py", "--config-file", "configs/SegPC/rmask_rcnn_lite2_fpn.yaml",
               "--num-gpus", str(processes), *(["--resume"] if resume else []),
               *SMALL, "SOLVER.MAX_ITER", str(max_iter), "OUTPUT_DIR", str(output)]
    env = {**os.environ, "OMP_NUM_THREADS": "1" if processes > 1 else "2"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def metrics(output: Path) -> dict:
    """iteration -> the metrics the main process wrote at it (every 20 iterations; evaluation results
    at the last one may come in a row of their own)."""
    merged: dict = {}
    for line in (output / "metrics.json").read_text().splitlines():
        row = json.loads(line)
        merged.setdefault(row["iteration"], {}).update(row)
    return merged


@pytest.mark.slow
def test_two_cpu_processes_train_checkpoint_resume_and_evaluate_like_one(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    train(two, processes=2, max_iter=20)
    assert (two / "model_final.pth").exists() and (two / "last_checkpoint").exists()
    train(two, processes=2, max_iter=40, resume=True)  # picks up at iteration 20, evaluates at the end
    train(one, processes=1, max_iter=40)

    two_rows, one_rows = metrics(two), metrics(one)
    assert {19, 39} <= set(two_rows) and {19, 39} <= set(one_rows)
    written = [json.loads(line)["iteration"] for line in (two / "metrics.json").read_text().splitlines()]
    assert not [i for i in set(written) if i < 19 and written.count(i) > 1], "the resumed run restarted from 0"
    for rows in (two_rows, one_rows):
        assert rows[39]["total_loss"] < rows[19]["total_loss"]
    # Same total batch, different shards of the data: the two runs end at similar losses.
    assert abs(two_rows[39]["total_loss"] - one_rows[39]["total_loss"]) < 0.25 * one_rows[39]["total_loss"]
    # Evaluation ran across both processes on the whole val set (4 images, 26 cells), not on a shard.
    results = (two / "inference" / "segpc_mini_val")
    assert (results / "coco_instances_results.json").exists()
    final = two_rows[max(two_rows)]
    assert final.get("segpc/gt_cells") == 26 and final.get("segpc/images") == 4
