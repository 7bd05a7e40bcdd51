"""What the inference tools share, as ``detectron2.engine.defaults`` is for Detectron2's: the model
arguments, the frozen inference config and the exit report."""
import argparse
import functools
import logging
import os
import sys
from typing import Callable, Optional, Sequence

from detectron2.config import CfgNode

from .. import model_zoo
from ..config import load_config, result_differences
from ..data.images import Failure
from ..modeling.precision import log_precision_policy
from ..utils.device import available_device
from ..utils.errors import InputError

logger = logging.getLogger(__name__)


def add_model_arguments(parser: argparse.ArgumentParser, score_threshold: float = 0.5) -> None:
    """The model options of the inference tools: config file, score threshold (``score_threshold`` by
    default), class names and trailing config overrides."""
    parser.add_argument("--config-file", metavar="FILE",
                        help="Detectron2 config YAML (with MODEL.WEIGHTS); default: the shipped model, "
                             f"{model_zoo.DEFAULT_DETECTOR}, with the shipped cell classifier")
    parser.add_argument("--score-threshold", type=float, default=score_threshold,
                        help="keep detections with at least this score (also sets "
                             "MODEL.ROI_HEADS.SCORE_THRESH_TEST)")
    parser.add_argument("--cell-diameter", type=str, metavar="PX",
                        help="median cell diameter in the input images, in pixels, for a model that resizes "
                             "by cell size (INPUT.CELL_DIAMETER.TEST), at least 8; default: known from the "
                             "frame size for SegPC-2021's microscopes, else estimated from each image; "
                             "'auto': estimated for SegPC's frame sizes too")
    parser.add_argument("--classes", help="model class names, comma-separated (e.g. cell,nucleus); "
                                          "default: thing_classes of DATASETS.TEST[0]")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS model_final.pth")


def setup_inference(config_file: Optional[str], opts: Sequence[str], score_threshold: float,
                    max_cells: int = 0, allow_untrained: bool = False) -> CfgNode:
    """The frozen inference config of ``config_file`` + ``opts``; without a config file, the shipped
    model's (:func:`~detectron2_myeloma.model_zoo.default_inference`) + ``opts``. InputError when no
    MODEL.WEIGHTS is given: a detector whose heads were never trained finds nothing, silently
    (``allow_untrained`` for timing, where the weights do not matter).

    The score threshold is applied inside the model; ``TEST.DETECTIONS_PER_IMAGE`` is raised to
    ``max_cells`` per class, room for that many cells and their nuclei; ``MODEL.DEVICE`` falls back to
    the CPU where CUDA is absent; with MODEL.WEIGHTS, no ImageNet weights are read (the checkpoint
    replaces them). Logs the precision each stage runs in."""
    if config_file is None:
        config_file, shipped_opts = model_zoo.default_inference()
        opts = [*shipped_opts, *opts]
    cfg = load_config(config_file, opts)
    check_shipped_config(cfg, config_file, opts)
    if not cfg.MODEL.WEIGHTS and not allow_untrained:
        raise InputError(f"{config_file}: MODEL.WEIGHTS is empty (the detector's heads would be untrained): "
                         f"add MODEL.WEIGHTS <checkpoint or shipped model, e.g. {model_zoo.DEFAULT_DETECTOR}>, "
                         "or leave out --config-file for the shipped model")
    if cfg.MODEL.WEIGHTS:  # the checkpoint replaces every backbone weight: no ImageNet file to read first
        cfg.MODEL.TIMM.PRETRAINED = False
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
    cfg.TEST.DETECTIONS_PER_IMAGE = max(cfg.TEST.DETECTIONS_PER_IMAGE,
                                        max_cells * cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    cfg.MODEL.DEVICE = available_device(cfg.MODEL.DEVICE)
    cfg.freeze()
    log_precision_policy(cfg, training=False)
    return cfg


def check_shipped_config(cfg: CfgNode, config_file: str, opts: Sequence[str]) -> None:
    """InputError when ``cfg`` (``config_file`` + ``opts``) names a shipped detector in MODEL.WEIGHTS but
    disagrees with the config it was trained with (the same ``opts`` applied to it) on a key that
    changes its predictions (:data:`~detectron2_myeloma.config.RESULT_KEYS`): a short name brings its
    own config, and another one would run the model at the wrong scale, or not at all."""
    name = model_zoo.shipped_name(cfg.MODEL.WEIGHTS)
    if name is None or os.path.abspath(config_file) == os.path.abspath(model_zoo.get_config_file(name)):
        return
    differences = result_differences(cfg, load_config(model_zoo.get_config_file(name), opts))
    if differences:
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise InputError(f"{config_file}: MODEL.WEIGHTS {name} is a shipped model with its own config "
                         f"({os.path.relpath(model_zoo.get_config_file(name))}), which this one contradicts: "
                         f"{shown}. Leave out --config-file (the short name brings its config), or give "
                         "the overrides on the command line")


# Set (to anything but "" or 0) to see the traceback behind a one-line input error.
DEBUG_ENV = "DETECTRON2_MYELOMA_DEBUG"


def reports_input_errors(main: Callable[..., int]) -> Callable[..., int]:
    """A tool's ``main`` that prints an InputError as one line on stderr and returns exit status 1
    (with ``$DETECTRON2_MYELOMA_DEBUG`` set it re-raises, traceback and all); other exceptions are bugs
    and keep their traceback."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except InputError as err:
            if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
                raise
            print(f"error: {err}", file=sys.stderr)
            return 1
    return wrapper


def report_failures(failures: Sequence[Failure]) -> int:
    """Log the skipped files (after the progress bars, so they are seen) and return the exit code."""
    for path, problem in failures:
        logger.error("not processed: %s: %s", path, problem)
    if failures:
        logger.error("%d file(s) could not be read", len(failures))
    return 1 if failures else 0
