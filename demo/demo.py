#!/usr/bin/env python
"""`make demo`: the whole job on the bundled real SegPC-2021 sample (10 train / 4 val images), on CPU.

Steps: convert the sample to COCO json and draw its ground truth; train R-Mask R-CNN on
segpc_mini_train (short schedule) and evaluate it on segpc_mini_val (COCO bbox/segm AP, SegPC mIoU);
cut cell crops and train the myeloma cell classifier; predict the val images with detector +
classifier (overlays, colour splash, CSV, COCO json); write the val split's submission.txt and score it
locally. Every step is one of the tools, run as a child process with the command printed, exactly as
a user would type it. Ends by printing where each result is and the headline numbers.

    python demo/demo.py --output output/demo [--iters 250] [--classifier-epochs 5]
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import List, Optional

from detectron2.data import DatasetCatalog

from detectron2_myeloma.data.builtin import SEGPC_MINI_VAL_IDS
from detectron2_myeloma.engine.trainer import EVALUATION_JSON

SAMPLE = os.path.join("datasets", "segpc_mini", "train")
DETECTOR = os.path.join("configs", "SegPC", "rmask_rcnn_lite2_fpn.yaml")
CLASSIFIER = os.path.join("configs", "Classifier", "lite2.yaml")


def val_folder(output: str) -> str:
    """The val images and masks of segpc_mini_val as a SegPC folder of their own (``x/``, ``y/``), for
    the tools that take folders: the sample keeps all 14 images in one folder."""
    root = os.path.join(output, "val")
    for sub in ("x", "y"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for record in DatasetCatalog.get("segpc_mini_val"):
        shutil.copy(record["file_name"], os.path.join(root, "x"))
    ids = set(SEGPC_MINI_VAL_IDS)
    for name in os.listdir(os.path.join(SAMPLE, "y")):
        if name.rsplit("_", 1)[0] in ids:
            shutil.copy(os.path.join(SAMPLE, "y", name), os.path.join(root, "y"))
    return root


def run_tool(tool: str, *argv: str) -> int:
    """``tools/<tool>.py argv`` in a child process, its command line printed first; its exit status."""
    command = [sys.executable, os.path.join("tools", f"{tool}.py"), *argv]
    print("$ " + shlex.join(["python", *command[1:]]), flush=True)
    return subprocess.run(command).returncode


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/demo")
    parser.add_argument("--iters", type=int, default=250, help="detector training iterations (batch of 4)")
    parser.add_argument("--classifier-epochs", type=int, default=5, help="cell classifier epochs")
    args = parser.parse_args(argv)
    out = args.output
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in
             ("detector", "crops", "classifier", "predictions", "submission.txt", "masks", "score.json")}
    weights = os.path.join(paths["detector"], "model_final.pth")
    classifier_weights = os.path.join(paths["classifier"], "model_best.pth")
    val = val_folder(out)
    iters = args.iters

    steps = [
        ("convert the bundled SegPC sample to COCO json (lossless RLE)",
         ("convert_to_coco", "--format", "segpc", "--input", SAMPLE,
          "--output", os.path.join(out, "segpc_mini_coco.json"))),
        ("ground-truth overlays and cell sizes (val split)",
         ("visualize_data", "segpc_mini_val", "--output", os.path.join(out, "gt_val"))),
        (f"train R-Mask R-CNN on segpc_mini_train ({iters} iterations), evaluate on segpc_mini_val",
         ("train_net", "--config-file", DETECTOR, "SOLVER.MAX_ITER", str(iters),
          "SOLVER.STEPS", f"({int(iters * 0.8)},)", "SOLVER.WARMUP_ITERS", str(min(50, iters // 4)),
          "SOLVER.CHECKPOINT_PERIOD", str(iters), "TEST.EVAL_PERIOD", "0", "SEED", "1",
          "OUTPUT_DIR", paths["detector"])),
        ("cut cell crops (annotated cells, stain-blob and detector negatives)",
         ("build_crops", "--dataset", "segpc_mini_train", "--val-dataset", "segpc_mini_val",
          "--output", paths["crops"], "--detector-config", DETECTOR, "--detector-weights", weights)),
        (f"train the cell classifier ({args.classifier_epochs} epochs)",
         ("train_classifier", "--config-file", CLASSIFIER, "--crops", paths["crops"],
          "--output", paths["classifier"], "SOLVER.EPOCHS", str(args.classifier_epochs))),
        ("detect and classify the val images: overlays, colour splash, CSV, COCO json",
         ("predict", "--config-file", DETECTOR, "--input", os.path.join(val, "x"),
          "--output", paths["predictions"], "MODEL.WEIGHTS", weights,
          "MODEL.POST_HOOKS", "['CellClassifierHook']", "MODEL.CELL_CLASSIFIER.WEIGHTS", classifier_weights)),
        ("write the SegPC-2021 submission of the val images",
         ("make_submission", "--config-file", DETECTOR, "--input", os.path.join(val, "x"),
          "--output", paths["submission.txt"], "--masks-out", paths["masks"], "MODEL.WEIGHTS", weights)),
        ("score the submission with the SegPC-2021 scorer",
         ("score_segpc", "--gt", os.path.join(val, "y"), "--submission", paths["submission.txt"],
          "--output", paths["score.json"])),
    ]
    start = time.time()
    for i, (title, command) in enumerate(steps, 1):
        print(f"\n=== demo step {i}/{len(steps)}: {title}", flush=True)
        step_start = time.time()
        status = run_tool(*command)
        if status != 0:
            print(f"demo step {i} failed (exit status {status})", file=sys.stderr)
            return 1
        print(f"=== step {i} took {time.time() - step_start:.0f} s", flush=True)

    evaluation = read_json(os.path.join(paths["detector"], "inference", EVALUATION_JSON))
    classifier = read_json(os.path.join(paths["classifier"], "metrics.json"))
    miou = read_json(paths["score.json"])["metrics"]["mIoU"]
    headline = {  # COCO APs in percent as Detectron2 reports them, the rest as fractions
        "segm AP (%)": evaluation["segm"]["AP"], "segm AP50 (%)": evaluation["segm"]["AP50"],
        "bbox AP (%)": evaluation["bbox"]["AP"], "SegPC mIoU (val submission)": miou,
        "classifier accuracy": classifier["accuracy"],
        "classifier balanced accuracy": classifier["balanced_accuracy"],
        "classifier ROC AUC": classifier["roc_auc"],
    }
    with open(os.path.join(out, "headline.json"), "w") as f:
        json.dump(headline, f, indent=1)
    print(f"\nDemo done in {(time.time() - start) / 60:.1f} min. Results in {out}/:")
    for where, what in [
        ("segpc_mini_coco.json", "the bundled sample as COCO json"),
        ("gt_val/", "ground-truth overlays and cell sizes"),
        ("detector/", "R-Mask R-CNN checkpoint, log, metrics.json; inference/ holds the COCO and SegPC evaluation"),
        ("crops/", "classifier crops (ImageFolder) and manifest.csv"),
        ("classifier/", "classifier checkpoint, metrics.json, confusion_matrix.png, roc_curve.png"),
        ("predictions/", "overlays, colour splash, summary.csv, cells.csv, COCO results json"),
        ("submission.txt, masks/", "SegPC-2021 submission of the val images and its masks"),
        ("score.json", "its local SegPC-2021 score"),
        ("headline.json", "the numbers below"),
    ]:
        print(f"  {where:<24}{what}")
    print("\nHeadline numbers (4 val images, 26 cells; a short CPU schedule on 10 training images):")
    for name, value in headline.items():
        print(f"  {name:<32}{'n/a' if value is None else f'{value:.3f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
