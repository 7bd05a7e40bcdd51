#!/usr/bin/env python
"""Convert SegPC-2021 folders, MiMM_SBILab PowerPoint decks, COCO json or per-instance mask folders to
standard COCO instances json (RLE masks), validated with pycocotools before an atomic write."""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
from typing import List, Optional

from detectron2.utils.logger import setup_logger

from detectron2_myeloma.data.datasets.convert import FORMATS, convert_to_coco
from detectron2_myeloma.data.datasets.segpc import CATEGORY_SETS
from detectron2_myeloma.engine.defaults import reports_input_errors
from detectron2_myeloma.utils.errors import InputError


@reports_input_errors
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--input", required=True, help="SegPC root (x/, y/), .pptx file or folder, "
                        "COCO json, or mask-folder root")
    parser.add_argument("--output", required=True, help="COCO json to write")
    parser.add_argument("--categories", default="cell", choices=sorted(CATEGORY_SETS),
                        help="SegPC only: whole cells, nuclei, or both")
    parser.add_argument("--image-root", help="coco: folder the json's file names are relative to; "
                        "pptx: folder of external images to match (default: extract embedded pictures)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable/invalid files with a warning instead of failing")
    args = parser.parse_args(argv)
    setup_logger(name="detectron2_myeloma")
    try:
        _, report = convert_to_coco(args.format, args.input, args.output, args.categories, args.image_root,
                                    strict=not args.skip_bad)
    except InputError as err:
        raise InputError(f"{err}; nothing was written to {args.output}") from err
    print(f"wrote {args.output}: {report.summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
