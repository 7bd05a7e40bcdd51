#!/usr/bin/env python
"""Train the myeloma cell classifier on a crop folder from tools/build_crops.py and report it on val.

    tools/train_classifier.py --config-file configs/Classifier/lite2.yaml --crops output/crops \\
        --output output/classifier [KEY VALUE ...]

Writes model_best.pth (best val balanced accuracy), model_last.pth, config.yaml, metrics.json,
confusion_matrix.png and roc_curve.png to --output.
"""
import argparse
import logging
from typing import List, Optional

from detectron2_myeloma.classifier.config import get_classifier_cfg
from detectron2_myeloma.classifier.trainer import train_classifier


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="classifier YAML (configs/Classifier/)")
    parser.add_argument("--crops", required=True, help="crop folder written by tools/build_crops.py")
    parser.add_argument("--output", help="output folder (default: the config's OUTPUT_DIR)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = get_classifier_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.output:
        cfg.OUTPUT_DIR = args.output
    cfg.freeze()
    return train_classifier(cfg, args.crops, cfg.OUTPUT_DIR)


if __name__ == "__main__":
    main()
