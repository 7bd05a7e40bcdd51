#!/usr/bin/env python
"""`make demo`: the main job on the bundled real SegPC-2021 sample, on CPU, with the shipped models.

Steps: convert the sample to COCO json and draw the ground truth of its 4 val images (frames the shipped
models never saw, at any resolution); evaluate the shipped detector on them (COCO bbox/segm AP, SegPC
mIoU); detect and classify them (overlays coloured by the classifier's answer, colour splash, CSV
counts, COCO json, QuPath GeoJSON, a case report), and again as one 2x2 mosaic predicted tile by tile;
write their SegPC-2021 submission.txt and score it. With --train (`make
demo-train`) the detector and the classifier are first trained from scratch on the 10 training images
of the sample (a short schedule) and used instead. Every step is one of the tools, run as a child
process with the command printed, exactly as a user would type it. Ends by printing where each result
is and the headline numbers.

    python demo/demo.py --output output/demo
    python demo/demo.py --output output/demo-train --train [--iters 250] [--classifier-epochs 5]
"""
import argparse
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import List, Optional

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _quiet  # noqa: E402,F401  the tools' warning filters, before anything imports fvcore
import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402

from detectron2_myeloma import model_zoo  # noqa: E402
from detectron2_myeloma.data.datasets.builtin import CELL_DIAMETERS, SEGPC_MINI_VAL_IDS  # noqa: E402
from detectron2_myeloma.data.images import image_files, read_image  # noqa: E402
from detectron2_myeloma.engine.trainer import EVALUATION_JSON  # noqa: E402

SAMPLE = os.path.join("datasets", "segpc_mini", "train")
DETECTOR = os.path.join("configs", "SegPC", "rmask_rcnn_lite2_fpn.yaml")  # what --train trains
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


def mosaic_folder(output: str, val: str) -> str:
    """The 4 val frames side by side, 2x2, as one 4080x3072 tiled TIFF: a stand-in of a region exported
    from a slide scanner, larger than a tile, for tools/predict.py's sliced inference."""
    folder = os.path.join(output, "mosaic_input")
    os.makedirs(folder, exist_ok=True)
    frames = [read_image(path, "RGB") for path in image_files(os.path.join(val, "x"))]
    mosaic = np.concatenate([np.concatenate(frames[0:2], axis=1), np.concatenate(frames[2:4], axis=1)], axis=0)
    tifffile.imwrite(os.path.join(folder, "val_mosaic_2x2.tif"), mosaic, tile=(512, 512), compression="zlib",
                     photometric="rgb")
    return folder


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
    parser.add_argument("--train", action="store_true",
                        help="train both models on the sample first instead of using the shipped ones")
    parser.add_argument("--iters", type=int, default=250, help="--train: detector iterations (batch of 4)")
    parser.add_argument("--classifier-epochs", type=int, default=5, help="--train: cell classifier epochs")
    args = parser.parse_args(argv)
    out = args.output
    os.makedirs(out, exist_ok=True)
    paths = {name: os.path.join(out, name) for name in
             ("detector", "crops", "classifier", "predictions", "mosaic", "submission.txt", "masks", "score.json")}
    weights = os.path.join(paths["detector"], "model_final.pth")
    classifier_weights = os.path.join(paths["classifier"], "model_best.pth")
    val = val_folder(out)
    mosaic = mosaic_folder(out, val)
    iters = args.iters

    steps = [
        ("convert the bundled SegPC sample to COCO json (lossless RLE)",
         ("convert_to_coco", "--format", "segpc", "--input", SAMPLE,
          "--output", os.path.join(out, "segpc_mini_coco.json"))),
        ("ground-truth overlays and cell sizes (val split)",
         ("visualize_data", "segpc_mini_val", "--output", os.path.join(out, "gt_val"), "--overwrite")),
    ]
    if args.train:
        model = ["--config-file", DETECTOR, "MODEL.WEIGHTS", weights]
        classifier = ["MODEL.POST_HOOKS", "['CellClassifierHook']", "MODEL.CELL_CLASSIFIER.WEIGHTS",
                      classifier_weights]
        steps += [
            (f"train R-Mask R-CNN on segpc_mini_train ({iters} iterations), evaluate on segpc_mini_val",
             ("train_net", "--config-file", DETECTOR, "SOLVER.MAX_ITER", str(iters),
              "SOLVER.STEPS", f"({int(iters * 0.8)},)", "SOLVER.WARMUP_ITERS", str(min(50, iters // 4)),
              "SOLVER.CHECKPOINT_PERIOD", str(iters), "TEST.EVAL_PERIOD", "0", "SEED", "1",
              "OUTPUT_DIR", paths["detector"])),
            ("cut cell crops (annotated cells, stain-blob and detector negatives)",
             ("build_crops", "--dataset", "segpc_mini_train", "--val-dataset", "segpc_mini_val",
              "--output", paths["crops"], "--overwrite", "--detector-config", DETECTOR,
              "--detector-weights", weights)),
            (f"train the cell classifier ({args.classifier_epochs} epochs)",
             ("train_classifier", "--config-file", CLASSIFIER, "--crops", paths["crops"],
              "--output", paths["classifier"], "SOLVER.EPOCHS", str(args.classifier_epochs))),
        ]
    else:  # the shipped models: the inference tools' default without --config-file
        config_file, _ = model_zoo.default_inference()
        model, classifier = [], []
        steps.append(
            (f"evaluate the shipped detector ({model_zoo.DEFAULT_DETECTOR}) on segpc_mini_val",
             ("train_net", "--config-file", config_file, "--eval-only", "MODEL.WEIGHTS", model_zoo.DEFAULT_DETECTOR,
              "DATASETS.TEST", "('segpc_mini_val',)", "OUTPUT_DIR", paths["detector"])))
    steps += [
        ("detect and classify the val images: overlays, colour splash, CSV, COCO json, QuPath GeoJSON, case report",
         ("predict", *model[:2], "--input", os.path.join(val, "x"), "--output", paths["predictions"],
          "--overwrite", *model[2:], *classifier)),
        ("the same on the val frames as one 4080x3072 mosaic (a slide-region stand-in), tile by tile",
         ("predict", *model[:2], "--input", mosaic, "--output", paths["mosaic"], "--overwrite",
          "--cell-diameter", str(CELL_DIAMETERS["segpc_mini"]), "--case", "val frames as one 2x2 mosaic",
          *model[2:], *classifier)),
        ("write the SegPC-2021 submission of the val images",
         ("make_submission", *model[:2], "--input", os.path.join(val, "x"), "--output", paths["submission.txt"],
          "--masks-out", paths["masks"], "--overwrite", *model[2:])),
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
    score = read_json(paths["score.json"])["metrics"]
    headline = {  # COCO APs in percent as Detectron2 reports them, the rest as fractions or counts
        "segm AP (%)": evaluation["segm"]["AP"], "segm AP50 (%)": evaluation["segm"]["AP50"],
        "bbox AP (%)": evaluation["bbox"]["AP"],
        "SegPC mIoU (val submission)": score["mIoU"], "SegPC P@0.5 (val submission)": score["P@0.5"],
        "submitted cells": score["predictions"],
    }
    if args.train:
        classifier = read_json(os.path.join(paths["classifier"], "metrics.json"))
        headline.update({"classifier accuracy": classifier["accuracy"],
                         "classifier balanced accuracy": classifier["balanced_accuracy"],
                         "classifier ROC AUC": classifier["roc_auc"]})
    with open(os.path.join(paths["predictions"], "summary.csv"), newline="") as f:
        summary = list(csv.DictReader(f))
    headline["annotated cells"] = sum(len(r["annotations"]) for r in DatasetCatalog.get("segpc_mini_val"))
    for column in ("cells", "myeloma", "non_myeloma"):
        headline[f"detected: {column}"] = sum(int(r[column] or 0) for r in summary)
    with open(os.path.join(paths["mosaic"], "summary.csv"), newline="") as f:
        headline["detected in the mosaic: cells"] = sum(int(r["cells"] or 0) for r in csv.DictReader(f))
    with open(os.path.join(out, "headline.json"), "w") as f:
        json.dump(headline, f, indent=1)
    print(f"\nDemo done in {(time.time() - start) / 60:.1f} min. Results in {out}/:")
    results = [("segpc_mini_coco.json", "the bundled sample as COCO json"),
               ("gt_val/", "ground-truth overlays and cell sizes")]
    if args.train:
        results += [
            ("detector/", "R-Mask R-CNN checkpoint, log, metrics.json; inference/ holds the COCO and SegPC "
                          "evaluation"),
            ("crops/", "classifier crops (ImageFolder) and manifest.csv"),
            ("classifier/", "classifier checkpoint, metrics.json, confusion_matrix.png, roc_curve.png")]
    else:
        results.append(("detector/inference/", "COCO and SegPC evaluation of the shipped detector"))
    results += [
        ("predictions/", "overlays (coloured by the classifier), colour splash, summary.csv, cells.csv, "
                         "COCO results json, <image>.geojson for QuPath, report.html (the case report)"),
        ("mosaic/", "the same for the 2x2 mosaic of the val frames, predicted tile by tile"),
        ("submission.txt, masks/", "SegPC-2021 submission of the val images and its masks"),
        ("score.json", "its local SegPC-2021 score"),
        ("headline.json", "the numbers below")]
    for where, what in results:
        print(f"  {where:<24}{what}")
    models = ("a short CPU schedule on the sample's 10 training images" if args.train else
              f"the shipped models, {model_zoo.DEFAULT_DETECTOR} (models/)")
    print(f"\nHeadline numbers (4 val images, 26 cells; {models}):")
    for name, value in headline.items():
        print(f"  {name:<32}{'n/a' if value is None else (value if isinstance(value, int) else f'{value:.3f}')}")
    print("SegPC-2021 annotates only some cells (the myeloma plasma cells, not every cell), so submitted cells "
          "without a matching annotation are expected: they lower P@0.5, and the SegPC mIoU does not penalise them.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
