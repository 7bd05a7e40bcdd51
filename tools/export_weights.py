#!/usr/bin/env python
"""Reduce a training checkpoint to what inference needs: the model weights, optionally in half precision.

    tools/export_weights.py --input output/.../model_final.pth --output models/NAME/model_fp16.pth \\
        [--dtype float16]

The optimizer, scheduler and iteration counter are dropped; MODEL.WEIGHTS takes the result as it takes
the original. With --only PREFIX... --base NAME only those weights are kept (a head trained on a frozen
shipped detector): loading the file loads NAME's weights with these on top.
"""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
import os
from typing import List, Optional

from detectron2_myeloma.checkpoint import DTYPES, model_weights, save_weights
from detectron2_myeloma.engine.defaults import reports_input_errors
from detectron2_myeloma.model_zoo import resolve_weights


@reports_input_errors
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="Detectron2 checkpoint (model_final.pth)")
    parser.add_argument("--output", required=True, help="weights file to write")
    parser.add_argument("--dtype", default="float16", choices=sorted(DTYPES), help="floating-point tensors' type")
    parser.add_argument("--only", nargs="+", metavar="PREFIX", default=(),
                        help="keep only the weights whose names start with these (what SOLVER.TRAINABLE_PREFIXES "
                             "trained); give --base, the model they complete")
    parser.add_argument("--base", help="with --only: the shipped model's short name (or the weights file) the "
                                       "kept weights are loaded on top of")
    args = parser.parse_args(argv)
    if bool(args.only) != bool(args.base):
        parser.error("--only and --base go together")
    if args.base and not os.path.isfile(resolve_weights(args.base)):  # refused before anything is written
        parser.error(f"--base {args.base}: neither a shipped model's short name nor a weights file")
    weights = model_weights(args.input, args.dtype, args.only)
    size = save_weights(weights, args.output, args.base)
    print(f"{len(weights)} tensors, {sum(v.numel() for v in weights.values()) / 1e6:.1f} M values, "
          f"{args.dtype}, {size / 2**20:.1f} MiB: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
