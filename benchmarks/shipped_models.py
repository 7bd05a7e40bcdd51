#!/usr/bin/env python
"""The shipped models' tables in docs/RESULTS.md, from what ``dev/ship_models.sh`` wrote.

    python -m benchmarks.shipped_models [--run output/ship] [--report docs/RESULTS.md]

Detector: SegPC mIoU (official scorer), segm AP / AP50 / AP75 and where the mIoU falls short (missed,
merged cells, boundaries) on every val set, for the shipped weights (float16), its float32 checkpoint
and the earlier 10-image model, side by side. Classifier: accuracy, balanced accuracy, ROC AUC and the
confusion matrix on crops of images it never saw, one row per set.
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Optional

from benchmarks.benchmarking import markdown_table
from benchmarks.comparison import replace_section
from detectron2_myeloma.engine.trainer import EVALUATION_JSON
from detectron2_myeloma.utils.atomic import write_atomic

DETECTORS = {  # row name -> evaluation folder under --run
    "shipped, float16 weights (models/segpc-rmask-lite2)": "eval_model_fp16",
    "shipped, float32 checkpoint": "eval_model_final",
    "earlier model: 10 images, 400 iterations": "baseline_10_images/eval",
}
SETS = {"segpc_mini_val": "full-size Olympus (4 frames, 26 cells)",
        "segpc_nikon_val": "full-size Nikon (4 frames, 18 cells)",
        "segpc_lowres_val": "reduced, both (139 frames, 691 cells)",
        "segpc_lowres_val_olympus": "reduced, Olympus",
        "segpc_lowres_val_nikon": "reduced, Nikon"}
CLASSIFIER_SETS = {"lowres_val": "segpc_lowres_val (reduced frames)", "mini_val": "segpc_mini_val (full-size Olympus)",
                   "nikon_val": "segpc_nikon_val (full-size Nikon)"}


def read_json(path: str) -> Optional[Dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def detector_table(evaluations: Dict[str, Optional[Dict]], sets: Dict[str, str] = SETS) -> str:
    """One row per val set and model ({row name: evaluation.json contents, None where missing}): SegPC
    mIoU, nucleus mIoU where any model has one, segm AP / AP50 / AP75 and the shortfall split."""
    nucleus = any("nucleus_mIoU" in e[d]["segpc"] for e in evaluations.values() if e for d in sets if d in e)
    headers = ["val set", "model", "mIoU", *(["nucleus mIoU"] if nucleus else []), "segm AP", "AP50", "AP75",
               "missed (cells / mIoU lost)", "merged (cells / mIoU lost)", "boundaries (mIoU lost)"]
    rows = []
    for dataset, description in sets.items():
        for name, evaluation in evaluations.items():
            if not evaluation or dataset not in evaluation:
                continue
            segpc, segm = evaluation[dataset]["segpc"], evaluation[dataset]["segm"]
            nucleus_cell = [f"{segpc['nucleus_mIoU']:.3f}" if "nucleus_mIoU" in segpc else "n/a"] if nucleus else []
            rows.append([f"`{dataset}`: {description}", name, f"{segpc['mIoU']:.3f}", *nucleus_cell,
                         f"{segm['AP']:.1f}", f"{segm['AP50']:.1f}", f"{segm['AP75']:.1f}",
                         f"{segpc['missed_cells']:.0f} / {segpc['loss_missed']:.3f}",
                         f"{segpc['merged_cells']:.0f} / {segpc['loss_merged']:.3f}",
                         f"{segpc['loss_boundary']:.3f}"])
    return markdown_table(headers, rows) + "\n"


def classifier_table(run: str) -> str:
    headers = ["crops of unseen images", "crops (myeloma / other)", "accuracy", "balanced accuracy", "ROC AUC",
               "confusion matrix [[TN, FP], [FN, TP]]"]
    rows = []
    for folder, description in CLASSIFIER_SETS.items():
        metrics = read_json(os.path.join(run, "classifier_eval", folder, "metrics.json"))
        if metrics is None:
            continue
        support = metrics["per_class"]
        auc = metrics["roc_auc"]
        rows.append([description, f"{support['myeloma']['support']} / {support['non_myeloma']['support']}",
                     f"{metrics['accuracy']:.3f}", f"{metrics['balanced_accuracy']:.3f}",
                     "n/a" if auc is None else f"{auc:.3f}", json.dumps(metrics["confusion_matrix"])])
    return markdown_table(headers, rows) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="output/ship", help="OUT folder of dev/ship_models.sh")
    parser.add_argument("--report", default="docs/RESULTS.md", help="markdown file with the tables' markers")
    args = parser.parse_args(argv)
    with open(args.report) as f:
        text = f.read()
    detectors = detector_table({name: read_json(os.path.join(args.run, folder, "inference", EVALUATION_JSON))
                                for name, folder in DETECTORS.items()})
    classifiers = classifier_table(args.run)
    text = replace_section(text, "shipped-detector", detectors)
    text = replace_section(text, "shipped-classifier", classifiers)
    write_atomic(args.report, text)
    print(detectors + "\n" + classifiers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
