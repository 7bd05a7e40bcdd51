#!/usr/bin/env python
"""Run a trained model on images and save what it found.

    tools/predict.py --input IMAGE_OR_DIR --output DIR [--score-threshold 0.5] [--cell-diameter PX]
    tools/predict.py --config-file CFG --input ... --output ... MODEL.WEIGHTS model_final.pth

Without --config-file the shipped SegPC-2021 model predicts (models/, detectron2_myeloma.model_zoo).

For each image: <stem>_overlay.png (each cell filled, outlined and captioned) and <stem>_splash.png
(detected cells in colour, the rest grey), scaled down to 1280 px, and <stem>.geojson (the cells for
QuPath: outlines, myeloma / other classification, areas, nucleus/cell ratio, scores; --no-geojson to
skip); for all images: summary.csv (one row per image: cells, myeloma / non-myeloma counts when a
classifier labelled the cells, mean score, mean and median cell area in pixels, the cell diameter the
image was predicted at and where it came from, warnings such as a greyscale image), cells.csv (one row per
detection) and instances_predictions.json (COCO results, RLE masks); and a report of the whole input as
one case (report.md, report.json, report.html: cells found, myeloma calls, the myeloma fraction with 95%
intervals, per-image counts, galleries of the most and least confident myeloma calls).

Images larger than a tile (TEST.TILES.SIZE pixels at the model's scale: slide regions, not camera
frames) are predicted tile by tile, in memory that follows the tile. The median cell diameter of an
image comes from --cell-diameter, else its frame size (SegPC-2021's), else it is estimated from the
image (images of one size share one estimate); summary.csv and the report say which. A
TIFF's full-resolution level is read a tile at a time; other formats are decoded whole first. Unreadable images are listed at the end and make the exit status 1. --output
must be a new or empty folder (--overwrite replaces an earlier run's whole); it appears when all is
written.

The cell classifier labels every detected cell myeloma or not (cells.csv and json: myeloma_label,
myeloma_prob) when switched on: MODEL.POST_HOOKS "['CellClassifierHook']" MODEL.CELL_CLASSIFIER.WEIGHTS
model_best.pth (of tools/train_classifier.py); add MODEL.CELL_CLASSIFIER.KEEP_NON_MYELOMA False to drop
the non-myeloma cells.
"""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
import logging
from typing import List, Optional

from detectron2_myeloma.data.classes import cell_and_nucleus_classes, model_metadata
from detectron2_myeloma.data.images import Failure, list_images
from detectron2_myeloma.data.colour import colour_warnings
from detectron2_myeloma.engine.cell_scale import image_scale_warnings, parse_cell_diameter
from detectron2_myeloma.utils.device import configure_cpu_math
from detectron2_myeloma.engine.defaults import (add_model_arguments, report_failures, reports_input_errors,
                                                setup_inference)
from detectron2_myeloma.engine.predictor import build_predictor
from detectron2_myeloma.engine.tiling import TiledPredictor, predict_cells
from detectron2_myeloma.export.case_report import CaseReport, default_case_name, describe_model
from detectron2_myeloma.export.geojson import OBJECT_TYPES
from detectron2_myeloma.export.predictions import PredictionWriter
from detectron2_myeloma.utils.atomic import OutputFolder


@reports_input_errors
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="image file or folder (.bmp/.png/.jpg/.tif...)")
    parser.add_argument("--recursive", action="store_true",
                        help="a folder's images in its subfolders too (their file names must differ)")
    parser.add_argument("--output", required=True, help="output folder (new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's --output folder")
    parser.add_argument("--case", help="name of the case in the report (default: the --input name)")
    parser.add_argument("--no-geojson", action="store_true", help="do not write <stem>.geojson for QuPath")
    parser.add_argument("--qupath-object", choices=OBJECT_TYPES, default="detection",
                        help="QuPath object type of each cell (default: detection; cell: with its nucleus)")
    parser.add_argument("--pixel-size", type=float, metavar="UM",
                        help="side of an image pixel in micrometres: areas in um^2 as well as in pixels")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    if args.pixel_size is not None and not args.pixel_size > 0:
        parser.error(f"--pixel-size must be a positive number of micrometres, got {args.pixel_size}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    paths = list_images(args.input, args.recursive)  # bad input is reported before the model loads
    cell_diameter = parse_cell_diameter(args.cell_diameter)
    output = OutputFolder(args.output, args.overwrite, tool="predict")
    configure_cpu_math()
    cfg = setup_inference(args.config_file, args.opts, args.score_threshold)
    metadata = model_metadata(cfg, args.classes)
    cell_class, nucleus_class = cell_and_nucleus_classes(metadata.thing_classes)
    predictor = TiledPredictor(build_predictor(cfg, cell_class), cfg, cell_class, cell_diameter)
    geojson = None if args.no_geojson else {"object_type": args.qupath_object, "pixel_size_um": args.pixel_size}
    report = CaseReport(cell_class, pixel_size_um=args.pixel_size)
    position = {path: index for index, path in enumerate(paths, start=1)}
    failures: List[Failure] = []
    with output as folder:
        with PredictionWriter(folder, metadata, cell_class, nucleus_class, geojson,
                              own_nuclei=cfg.MODEL.ROI_MASK_HEAD.NUCLEUS) as writer:
            for path, image, detections, scale in predict_cells(predictor, paths, failures):
                warnings = colour_warnings(image) + image_scale_warnings(path, scale, detections, cell_class)
                writer.add(position[path], path, image, detections, warnings, scale)
                report.add(path, image, detections, warnings, scale)
        report.write(folder, args.case or default_case_name(args.input), describe_model(cfg), failures)
    print(f"{len(writer.results)} detections in {len(paths) - len(failures)} images: {args.output}")
    return report_failures(failures)


if __name__ == "__main__":
    raise SystemExit(main())
