#!/usr/bin/env python
"""Draw a training run's curves: loss, and each periodic evaluation (TEST.EVAL_PERIOD) per test set.

    tools/plot_training.py output/segpc/rmask_rcnn_lite2_fpn_d80 [--output curve.png] \\
        [--metrics segpc/mIoU segm/AP]

Reads OUTPUT_DIR/metrics.json (Detectron2's); writes the PNG (default OUTPUT_DIR/training_curve.png) and
prints the evaluations as a markdown table.
"""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
import io
import os
from typing import List, Optional

from tabulate import tabulate

from detectron2_myeloma.export.curves import evaluation_table, plot_curves, read_metrics
from detectron2_myeloma.engine.defaults import reports_input_errors
from detectron2_myeloma.utils.atomic import write_atomic


@reports_input_errors
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="training OUTPUT_DIR (or its metrics.json)")
    parser.add_argument("--output", help="PNG to write (default: RUN/training_curve.png)")
    parser.add_argument("--metrics", nargs="+", default=["segpc/mIoU", "segm/AP"],
                        help="evaluation metrics to draw, as <task>/<metric>")
    args = parser.parse_args(argv)
    metrics_file = args.run if args.run.endswith(".json") else os.path.join(args.run, "metrics.json")
    output = args.output or os.path.join(os.path.dirname(metrics_file), "training_curve.png")
    losses, evaluations = read_metrics(metrics_file)
    fig = plot_curves(losses, evaluations, args.metrics)
    png = io.BytesIO()
    fig.savefig(png, dpi=110, format="png")
    write_atomic(output, png.getvalue())
    headers, rows = evaluation_table(evaluations, args.metrics)
    if rows:
        print(tabulate(rows, headers, tablefmt="github", floatfmt=".3f"))
    print(f"{len(losses)} logged steps, {len(rows)} evaluations: {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
