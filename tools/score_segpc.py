#!/usr/bin/env python
"""Score a SegPC-2021 ``submission.txt`` against a ``y/`` mask folder with the official mIoU.

Reads one submission line and one image's masks at a time, so a full split fits in little memory.
Prints the metrics, the per-image scores, and as the last line ``mIoU <value>`` for scripts.
"""
import argparse
import json
import logging
from collections import OrderedDict
from typing import List, Optional

import numpy as np

from detectron2_myeloma.data.segpc_format import iter_submission, read_segpc_mask, resize_to_submission
from detectron2_myeloma.evaluation.segpc_score import aggregate, gt_mask_files, match_image


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gt", required=True, help="SegPC y/ folder of <id>_<k> masks (0/20/40)")
    parser.add_argument("--submission", required=True, help="submission.txt to score")
    parser.add_argument("--output", help="also write metrics and per-image scores to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    gt_files = gt_mask_files(args.gt)

    def gt_cells(image_id: str) -> List[np.ndarray]:
        return [resize_to_submission(read_segpc_mask(p)) for p in gt_files[image_id]]

    matches = {}
    for image_id, instances in iter_submission(args.submission):
        if image_id not in gt_files:
            logging.warning("submission image %s has no ground truth: ignored", image_id)
            continue
        matches[image_id] = match_image(gt_cells(image_id), [nuc | cyt for nuc, cyt in instances])
    for image_id in gt_files.keys() - matches.keys():
        matches[image_id] = match_image(gt_cells(image_id), [])
    score = aggregate(OrderedDict((image_id, matches[image_id]) for image_id in gt_files))

    metrics = score.to_dict()
    print(f"{'metric':<16}value")
    for name, value in metrics.items():
        print(f"{name:<16}{value:.6f}" if isinstance(value, float) else f"{name:<16}{value}")
    print(f"\n{'image':<16}{'mIoU':>10}{'cells':>7}{'preds':>7}{'TP@0.5':>8}")
    for image_id, row in score.per_image.items():
        miou = "-" if row["mIoU"] is None else f"{row['mIoU']:.6f}"
        print(f"{image_id:<16}{miou:>10}{row['gt_cells']:>7}{row['predictions']:>7}{row['matched@0.5']:>8}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"metrics": metrics, "per_image": score.per_image}, f, indent=1)
    print(f"mIoU {score.miou:.6f}")


if __name__ == "__main__":
    main()
