#!/usr/bin/env python
"""Score a SegPC-2021 ``submission.txt`` against a ``y/`` mask folder with the official mIoU.

Reads one submission line and one image's masks at a time, so a full split fits in little memory.
Prints the metrics, the per-image scores, and as the last line ``mIoU <value>`` for scripts.
"""
import argparse
import json
import logging
from typing import List, Optional

from tabulate import tabulate

from detectron2_myeloma.evaluation.segpc_score import score_submission


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gt", required=True, help="SegPC y/ folder of <id>_<k> masks (0/20/40)")
    parser.add_argument("--submission", required=True, help="submission.txt to score")
    parser.add_argument("--output", help="also write metrics and per-image scores to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    score = score_submission(args.gt, args.submission)
    metrics = score.to_dict()
    print(tabulate([(name, f"{v:.6f}" if isinstance(v, float) else v) for name, v in metrics.items()],
                   headers=["metric", "value"], disable_numparse=True))
    print()
    print(tabulate([[image_id, "-" if row["mIoU"] is None else f"{row['mIoU']:.6f}", row["gt_cells"],
                     row["predictions"], row["matched@0.5"]] for image_id, row in score.per_image.items()],
                   headers=["image", "mIoU", "cells", "preds", "TP@0.5"], disable_numparse=True))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"metrics": metrics, "per_image": score.per_image}, f, indent=1)
    print(f"mIoU {score.miou:.6f}")


if __name__ == "__main__":
    main()
