#!/usr/bin/env python
"""Build the myeloma / non-myeloma crop folder that tools/train_classifier.py trains on.

    tools/build_crops.py --dataset segpc_mini_train --val-dataset segpc_mini_val --output output/crops
    tools/build_crops.py --dataset segpc_train --val-fraction 0.2 --output output/crops \\
        --detector-config configs/SegPC/rmask_rcnn_lite2_fpn.yaml --detector-weights model_final.pth

Positives are the annotated cells. Negatives are stained nuclei of no annotated cell (stain heuristic,
sizes measured on the training split) and, with a detector, its detections that match no annotation.
Splits are whole images: --val-dataset, or a deterministic --val-fraction of --dataset's images; an
image in both splits is refused. --output must be a new or empty folder (--overwrite replaces an earlier
run's whole).
"""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
import json
import logging
from typing import List, Optional

import detectron2_myeloma  # noqa: F401  registers the datasets
from detectron2_myeloma.classifier.dataset import build_crop_dataset, split_by_image
from detectron2_myeloma.classifier.negatives import CellSizePrior
from detectron2_myeloma.data.catalog import check_dataset_names, dataset_dicts
from detectron2_myeloma.engine.box_predictor import box_predictor
from detectron2_myeloma.engine.defaults import reports_input_errors
from detectron2_myeloma.utils.atomic import OutputFolder


@reports_input_errors
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True,
                        help="registered dataset whose annotated cells are positives")
    parser.add_argument("--output", required=True, help="crop folder to write (new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's --output folder")
    parser.add_argument("--val-dataset", help="registered dataset for the val split (else --val-fraction)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of --dataset's images put in val when there is no --val-dataset")
    parser.add_argument("--margin", type=float, default=0.15, help="relative margin of the square crops")
    parser.add_argument("--size", type=int, default=128, help="crop side in pixels (= classifier INPUT.SIZE)")
    parser.add_argument("--crop-diameters", type=float, default=0.0,
                        help="cut squares of this many median cell diameters (the datasets' cell_diameter): one "
                             "physical scale for every source (= classifier INPUT.CROP_DIAMETERS); 0: from "
                             "each box and --margin")
    parser.add_argument("--iou-threshold", type=float, default=0.3,
                        help="a negative overlaps every annotated cell box with IoU below this")
    parser.add_argument("--no-stain-heuristic", action="store_true",
                        help="no stain negatives (datasets without nucleus masks); needs a detector")
    parser.add_argument("--detector-config", help="detector config for hard negatives")
    parser.add_argument("--detector-weights", help="detector checkpoint for hard negatives")
    parser.add_argument("--device", help="detector device (default: the config's MODEL.DEVICE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if bool(args.detector_config) != bool(args.detector_weights):
        parser.error("--detector-config and --detector-weights go together")
    if args.val_dataset == args.dataset:
        parser.error("--val-dataset is --dataset: the val crops would be of training images")
    if args.no_stain_heuristic and not args.detector_config:
        parser.error("--no-stain-heuristic leaves no negatives: give --detector-config and --detector-weights")
    check_dataset_names([args.dataset], "--dataset")
    if args.val_dataset:
        check_dataset_names([args.val_dataset], "--val-dataset")
    output = OutputFolder(args.output, args.overwrite, tool="build_crops")

    records = dataset_dicts(args.dataset, "--dataset")
    if args.val_dataset:
        train, val = records, dataset_dicts(args.val_dataset, "--val-dataset")
    else:
        train, val = split_by_image(records, args.val_fraction)
    prior = None if args.no_stain_heuristic else CellSizePrior.from_dataset(train)
    predictor = (box_predictor(args.detector_config, args.detector_weights, args.device)
                 if args.detector_config else None)
    with output as folder:
        balance = build_crop_dataset(
            {"train": train, "val": val}, folder, margin=args.margin, size=args.size, prior=prior,
            predictor=predictor, iou_threshold=args.iou_threshold, crop_diameters=args.crop_diameters,
            info={"dataset": args.dataset, "val_dataset": args.val_dataset,
                  "val_fraction": None if args.val_dataset else args.val_fraction,
                  "detector_weights": args.detector_weights})
    print(f"{'split':<6}{'images':>8}{'myeloma':>9}{'non_myeloma':>13}{'myeloma %':>11}  sources")
    for split, counts in balance.items():
        labels = counts["labels"]
        print(f"{split:<6}{counts['images']:>8}{labels['myeloma']:>9}{labels['non_myeloma']:>13}"
              f"{100 * counts['myeloma_fraction']:>10.1f}%  {json.dumps(counts['sources'])}")
    print(f"crops: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
