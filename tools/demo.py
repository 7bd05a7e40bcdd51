#!/usr/bin/env python
"""`make demo`: the project's job on the bundled real SegPC-2021 sample, step by step.

Steps so far: convert the sample to COCO json (lossless RLE), draw ground-truth overlays and measure the
cells. Each step prints what it wrote.
"""
import argparse
import os
import sys
import time

from tools.convert_to_coco import main as convert_main
from tools.visualize_data import main as visualize_main

SAMPLE = os.path.join("datasets", "segpc_mini", "train")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="output/demo")
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    steps = [
        ("convert the bundled SegPC sample to COCO json",
         lambda: convert_main(["--format", "segpc", "--input", SAMPLE,
                               "--output", os.path.join(args.output, "segpc_mini_coco.json")])),
        ("ground-truth overlays and cell sizes (train split)",
         lambda: visualize_main(["segpc_mini_train", "--output", os.path.join(args.output, "gt_train"),
                                 "--max-images", "10"])),
        ("ground-truth overlays and cell sizes (val split)",
         lambda: visualize_main(["segpc_mini_val", "--output", os.path.join(args.output, "gt_val"),
                                 "--max-images", "10"])),
    ]
    for i, (title, run) in enumerate(steps, 1):
        print(f"\n=== demo step {i}/{len(steps)}: {title}", flush=True)
        start = time.time()
        if run() != 0:
            print(f"demo step {i} failed", file=sys.stderr)
            return 1
        print(f"(step {i} took {time.time() - start:.1f} s)")
    print(f"\nDemo outputs in {args.output}/: segpc_mini_coco.json, gt_train/ and gt_val/ "
          "(overlay PNGs, summary.json, sizes.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
