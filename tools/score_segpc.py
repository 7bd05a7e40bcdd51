#!/usr/bin/env python
"""Score a SegPC-2021 ``submission.txt`` against a ``y/`` mask folder with the official mIoU.

Reads one submission line and one image's masks at a time, so a full split fits in little memory.
Prints the metrics, the per-image scores, what the official scorer passes over in silence (ground-truth
images without a line: they score 0; lines without ground truth: ignored; malformed lines: their image
scores 0), and as the last line ``mIoU <value>`` for scripts. A submission with nothing to score (no
line, none with ground truth, no instance) is an error, exit status 1; with --strict so is any of the
three kinds above.
"""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
import logging
from typing import List, Optional

from tabulate import tabulate

from detectron2_myeloma.engine.defaults import reports_input_errors
from detectron2_myeloma.evaluation.submission_score import score_submission
from detectron2_myeloma.utils.atomic import check_output_file, write_json_atomic


@reports_input_errors
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gt", required=True, help="SegPC y/ folder of <id>_<k> masks (0/20/40)")
    parser.add_argument("--submission", required=True, help="submission.txt to score")
    parser.add_argument("--output", help="also write metrics, per-image scores and the submission's "
                                         "problems to this JSON file")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit status 1) on a ground-truth image without a line, a line without "
                             "ground truth or a malformed line, instead of counting them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    if args.output:
        check_output_file(args.output)  # a bad path fails now, not after the scoring
    score, report = score_submission(args.gt, args.submission, args.strict)
    metrics = score.to_dict()
    print(tabulate([(name, f"{v:.6f}" if isinstance(v, float) else v) for name, v in metrics.items()],
                   headers=["metric", "value"], disable_numparse=True))
    print()
    print(tabulate([[image_id, "-" if row["mIoU"] is None else f"{row['mIoU']:.6f}", row["gt_cells"],
                     row["predictions"], row["matched@0.5"]] for image_id, row in score.per_image.items()],
                   headers=["image", "mIoU", "cells", "preds", "TP@0.5"], disable_numparse=True))
    print()
    print(report.summary())
    if args.output:
        write_json_atomic({"metrics": metrics, "per_image": score.per_image, "submission": report.to_dict()},
                          args.output, indent=1)
    print(f"mIoU {score.miou:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
