#!/usr/bin/env python
"""Report a trained cell classifier on crops of images it never saw.

    tools/evaluate_classifier.py --weights model_best.pth --crops output/crops_nikon_val [--split val] \\
        --output output/classifier_eval/nikon_val

The crop folder comes from tools/build_crops.py, cut as the classifier's training crops were (size,
margin, crop diameters: checked). Writes metrics.json (accuracy, balanced accuracy, ROC AUC, confusion
matrix, per class), confusion_matrix.png and roc_curve.png to --output. --weights takes a shipped model's
short name too.
"""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
import logging
from typing import List, Optional

from detectron2_myeloma.classifier.evaluation import format_metrics
from detectron2_myeloma.classifier.trainer import evaluate_classifier
from detectron2_myeloma.engine.defaults import reports_input_errors
from detectron2_myeloma.model_zoo import resolve_weights


@reports_input_errors
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="classifier checkpoint (model_best.pth) or shipped name")
    parser.add_argument("--crops", required=True, help="crop folder of tools/build_crops.py")
    parser.add_argument("--split", default="val", help="split of the crop folder to report on")
    parser.add_argument("--output", required=True, help="folder for metrics.json and the plots")
    parser.add_argument("--workers", type=int, default=2, help="crop-loading worker processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    metrics = evaluate_classifier(resolve_weights(args.weights), args.crops, args.split, args.output,
                                  num_workers=args.workers)
    print(format_metrics(metrics))
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
