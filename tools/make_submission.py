#!/usr/bin/env python
"""Write a SegPC-2021 submission.txt, from a trained model or from a folder of 0/20/40 cell masks.

    tools/make_submission.py --input test/x --output submission.txt [--masks-out DIR] [--no-tta] \\
        [--score-threshold 0.05] [--max-instances 100] [--config-file CFG MODEL.WEIGHTS model_final.pth]
    tools/make_submission.py --masks-in val/y --images val/x --output submission.txt

By default each image is predicted in its 8 flips and 90-degree turns and each cell's masks averaged
(test-time augmentation, about 5x the time; --no-tta: once). Images go through tools/predict.py's path:
the same cell scale, tiles for images larger than a tile, the same detections, except that a submission
keeps fragments (partial second masks of a cell, which predict.py drops to count cells once: see
KEEP_FRAGMENTS; TEST.FRAGMENT_MAX_INSIDE 0.75 drops them here too). Each cell's nucleus is
the model's own (MODEL.ROI_MASK_HEAD.NUCLEUS) or a nucleus detection inside it; a model with neither
gets an estimated one, said in the log. No instance ever has an empty nucleus or cytoplasm list (the
official parser would zero the image): see detectron2_myeloma.evaluation.submission for the rule.
Unreadable images are listed at the end and make the exit status 1; the others are still written.
--masks-out must be a new or empty folder (--overwrite replaces an earlier run's whole). With the cell
classifier configured (MODEL.POST_HOOKS, see tools/predict.py; the shipped one is), it runs only with
MODEL.CELL_CLASSIFIER.KEEP_NON_MYELOMA False, which submits the myeloma cells only: a submission holds no
labels.
"""
import _quiet  # noqa: F401  first: silences third-party warnings that are not the user's business
import argparse
import logging
from typing import List, Optional

from detectron2_myeloma.evaluation.submission import (
    SubmissionWriter,
    submission_parts,
    write_masks_submission,
)
from detectron2_myeloma.data.classes import cell_and_nucleus_classes, model_metadata
from detectron2_myeloma.data.images import Failure, image_stem, list_images
from detectron2_myeloma.engine.cell_scale import parse_cell_diameter
from detectron2_myeloma.utils.device import configure_cpu_math
from detectron2_myeloma.engine.defaults import (add_model_arguments, report_failures, reports_input_errors,
                                                setup_inference)
from detectron2_myeloma.engine.predictor import build_predictor
from detectron2_myeloma.engine.tiling import TiledPredictor, predict_cells
from detectron2_myeloma.engine.tta import SYMMETRY_VIEWS
from detectron2_myeloma.modeling.post_hooks import post_hook_infos, without_label_only_hooks


logger = logging.getLogger("detectron2_myeloma.make_submission")
# A fragment, like any extra instance, costs nothing in the SegPC-2021 score, and dropping one can lose a
# cell its best match: with test-time augmentation the rule costs 0.003 mIoU on segpc_lowres_val
# (docs/RESULTS.md, "One inference path"). So a submission keeps them; the user's opts may change that.
KEEP_FRAGMENTS = ["TEST.FRAGMENT_MAX_INSIDE", 0.0]


@reports_input_errors
def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="submission.txt to write")
    parser.add_argument("--masks-out", metavar="DIR",
                        help="also save <id>_<k>.bmp masks (20/40) at image size, in this new folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's --masks-out folder")
    parser.add_argument("--input", help="model mode: image file or folder (.bmp/.png/.jpg/.tif...)")
    parser.add_argument("--recursive", action="store_true",
                        help="an --input or --images folder's images in its subfolders too (their file names "
                             "must differ)")
    parser.add_argument("--max-instances", type=int, default=100, help="model mode: most cells per image")
    parser.add_argument("--masks-in", metavar="DIR", help="mask mode: folder of <id>_<k>.bmp/png masks")
    parser.add_argument("--images", metavar="DIR", help="mask mode: images folder; ids without masks get "
                                                        "empty lines")
    # 0.05, Detectron2's SCORE_THRESH_TEST: extra instances cost nothing in the SegPC-2021 score, so a
    # higher threshold can only lose cells (docs/RESULTS.md, "The shipped models")
    add_model_arguments(parser, score_threshold=0.05)
    parser.add_argument("--no-tta", action="store_true",
                        help="model mode: predict each image once; by default it is predicted in its 8 flips and "
                             "90-degree turns and each cell's masks averaged (TEST.AUG; docs/RESULTS.md, \"Outlines "
                             "and nuclei\": higher mIoU for about 5x the time)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    if args.masks_in:
        if args.config_file or args.input:
            parser.error("--masks-in excludes --config-file and --input")
        stats = write_masks_submission(args.masks_in, args.output, args.images, args.masks_out, args.overwrite,
                                       args.recursive)
        print(stats.summary())
        return 0
    if not args.input:
        parser.error("give --input (model mode; without --config-file the shipped model), or --masks-in")

    paths = list_images(args.input, args.recursive)  # bad input and output are reported before the model
    cell_diameter = parse_cell_diameter(args.cell_diameter)
    writer = SubmissionWriter(args.output, args.masks_out, args.overwrite)
    configure_cpu_math()
    views = [] if args.no_tta else SYMMETRY_VIEWS  # before the user's opts, which may change them
    cfg = setup_inference(args.config_file, [*KEEP_FRAGMENTS, *views, *args.opts], args.score_threshold,
                          max_cells=args.max_instances)
    if cfg.TEST.AUG.ENABLED:
        logger.info("test-time augmentation: each image predicted in its flips and turns (--no-tta: once)")
    labels_only = [info.describe(cfg) for info in post_hook_infos(cfg) if not info.changes_detections(cfg)]
    if labels_only:
        logger.info("%s not run: a submission holds no labels (with MODEL.CELL_CLASSIFIER.KEEP_NON_MYELOMA False "
                    "the classifier runs and the myeloma cells only are submitted)", ", ".join(labels_only))
        cfg = without_label_only_hooks(cfg)
    cell_class, nucleus_class = cell_and_nucleus_classes(model_metadata(cfg, args.classes).thing_classes)
    if nucleus_class is None and not cfg.MODEL.ROI_MASK_HEAD.NUCLEUS:
        logger.warning("this model predicts no nucleus: each cell's nucleus is estimated by a rule (its inner "
                       "40%), which matches annotated nuclei poorly (docs/RESULTS.md, \"Outlines and nuclei\")")
    predictor = TiledPredictor(build_predictor(cfg, cell_class), cfg, cell_class, cell_diameter)
    failures: List[Failure] = []
    with writer:
        for path, _, detections, _ in predict_cells(predictor, paths, failures):
            parts = submission_parts(detections, cell_class, nucleus_class, args.score_threshold,
                                     args.max_instances)
            writer.write(image_stem(path), parts)
    print(writer.stats.summary())
    return report_failures(failures)


if __name__ == "__main__":
    raise SystemExit(main())
