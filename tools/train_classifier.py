#!/usr/bin/env python
"""Train the myeloma cell classifier on a crop folder from tools/build_crops.py and report it on val.

    tools/train_classifier.py --config-file configs/Classifier/lite2.yaml --crops output/crops \\
        --output output/classifier [KEY VALUE ...]

Writes model_best.pth (best val balanced accuracy), model_last.pth, config.yaml, metrics.json,
confusion_matrix.png and roc_curve.png to --output.
"""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
import logging
from typing import List, Optional

from detectron2_myeloma.classifier.config import load_classifier_config
from detectron2_myeloma.classifier.trainer import train_classifier
from detectron2_myeloma.engine.defaults import reports_input_errors


@reports_input_errors
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="classifier YAML (configs/Classifier/)")
    parser.add_argument("--crops", required=True, help="crop folder written by tools/build_crops.py")
    parser.add_argument("--output", help="output folder (default: the config's OUTPUT_DIR)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_classifier_config(args.config_file, args.opts)
    if args.output:
        cfg.OUTPUT_DIR = args.output
    cfg.freeze()
    train_classifier(cfg, args.crops, cfg.OUTPUT_DIR)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
