#!/usr/bin/env python
"""Benchmarks (``make bench``): costs of the project's models and tools as ratios measured side by side
in one run, several repeats each, written as markdown with the machine's description.

    python -m benchmarks.benchmark --output benchmarks/RESULTS.md [--sections inference training ...] [--repeats 3]

Sections:
  inference   seconds and peak memory per full-size image: plain Mask R-CNN (baseline), each R-Mask
              R-CNN part switched on alone, and R-Mask R-CNN
  training    seconds per iteration of the same models, each config's own training settings
  classifier  the cell-classifier post-hook over detection alone
  scorer      the vectorised SegPC scorer over a loop transcription of the official algorithm
  converters  images/s of convert_to_coco on SegPC folders and PowerPoint decks
  speedups    R-Mask R-CNN from Detectron2's COCO-tuned settings to the shipped ones, one change at a
              time: training s/iteration and inference s/image, each as a ratio to the step before
  precision   R-Mask R-CNN in float32, forced bfloat16 and as shipped (auto), training and inference, on
              this CPU and, where it has native bfloat16, on the same CPU restricted to AVX2
  profile     where one training iteration and one inference of R-Mask R-CNN spend their time
              (torch.profiler tables written beside the report as profile_training.txt and
              profile_inference.txt)
  equal-time  training loss reached in the same wall-clock time (--budget) with Detectron2's settings
              and with the shipped ones
  large-images  seconds per megapixel and peak memory of tools/predict.py's sliced inference against
              the image size (mosaics of real frames up to 50 megapixels), shipped models
  mask-heads  seconds per full-size frame of each mask head option, test scale and test-time augmentation
  end-to-end  tools/predict.py and tools/make_submission.py per full-size frame, start-up excluded, with
              and without the cell classifier, beside the same commands at a baseline commit

Every measurement runs in a fresh process (its own peak memory, nothing warmed by an earlier one); the
report and its JSON twin (``--output`` with ``.json``: every measurement, for the comparison tables of
docs/RESULTS.md) are rewritten after each section. Models are untrained (timing does not depend on the
weights), except in large-images, where the number of cells found drives the cost.
"""
import argparse
import logging
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tifffile
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.utils.events import EventStorage

from benchmarks.ablations import BASELINE_CONFIG, RMASK_CONFIG, VARIANTS
from benchmarks.benchmarking import (
    FOOTER_START,
    MarkdownReport,
    Measurement,
    REPO,
    format_number,
    inference_step,
    machine_info,
    markdown_table,
    profile_call,
    results_table,
    run_in_fresh_process,
    run_script,
    time_calls,
    time_inference,
    time_training,
    training_step,
)
from benchmarks.end_to_end import FRAMES as END_TO_END_FRAMES, end_to_end_section
from detectron2_myeloma import load_config
from detectron2_myeloma.checkpoint import load_checkpoint, save_weights
from detectron2_myeloma.data.datasets.builtin import CELL_DIAMETERS
from detectron2_myeloma.data.classes import cell_and_nucleus_classes, model_metadata
from detectron2_myeloma.data.images import read_image
from detectron2_myeloma.data.regions import open_regions
from detectron2_myeloma.utils.device import configure_cpu_math
from detectron2_myeloma.engine.defaults import setup_inference
from detectron2_myeloma.engine.predictor import build_predictor
from detectron2_myeloma.engine.tiling import TiledPredictor
from detectron2_myeloma.engine.trainer import Trainer
from detectron2_myeloma.engine.tta import SYMMETRY_VIEWS
from detectron2_myeloma.model_zoo import resolve_weights
from detectron2_myeloma.modeling.precision import (
    cpu_features,
    inference_precision,
    resolve_precision,
    training_precision,
)
from detectron2_myeloma.utils.device import available_device
from testing.pptx_decks import build_main_deck, write_png
from testing.segpc_reference import official_miou, perturbations


SEGPC_MINI = REPO / "datasets" / "segpc_mini" / "train"
FULL_SIZE = (1536, 2040)  # rows, columns of SegPC-2021 images
BASELINE = f"configs/SegPC/{BASELINE_CONFIG}.yaml"
RMASK = f"configs/SegPC/{RMASK_CONFIG}.yaml"
CLASSIFIER = "configs/Classifier/lite2.yaml"
CELLS_PER_IMAGE = 10  # detections a trained SegPC detector keeps per image, for the classifier hook's cost
MODELS: Dict[str, Tuple[str, List[Any]]] = {
    v.name: (f"configs/SegPC/{v.config}.yaml", v.overrides) for v in VARIANTS.values()}

logger = logging.getLogger("benchmark")
# What a section returns: its markdown body, and its tables' measurements by name (for RESULTS.json).
SectionResult = Tuple[str, Dict[str, List[Measurement]]]


def measure_all(variants: Sequence[Tuple[str, Callable[..., Dict[str, Any]], Tuple]],
                env: Optional[Dict[str, str]] = None) -> List[Measurement]:
    """``(name, fn, args)`` measured one after the other, each in a fresh process (with ``env``); fn
    returns ``{"seconds": [...], ...}`` and the other keys stay in the measurement's ``columns``."""
    measurements = []
    for name, fn, args in variants:
        logger.info("measuring %s", name)
        result = run_in_fresh_process(fn, *args, name, env=env)
        measurements.append(Measurement(name, result.pop("seconds"), result.pop("peak_rss_mb"), result))
    return measurements


def measure_models(make_cfg: Callable[[str, List[Any]], CfgNode], worker: Callable[..., Dict[str, Any]],
                   *args: Any) -> List[Measurement]:
    """``worker(make_cfg(config_file, opts), *args, name)`` for every model of MODELS."""
    return measure_all([(name, worker, (make_cfg(*model), *args)) for name, model in MODELS.items()])


# --- inference and classifier --------------------------------------------------------------------
def full_size_bmps(folder: Path, count: int) -> List[str]:
    """Up to ``count`` of the bundled 2040x1536 images written as BMP: SegPC-2021 ships BMP (about 9 MB
    each) while the sample stores JPEG, and a user's run reads BMP."""
    paths = []
    for source in sorted((SEGPC_MINI / "x").iterdir()):
        if len(paths) == count:
            break
        image = read_image(str(source))
        if image.shape[:2] == FULL_SIZE:
            paths.append(str(folder / f"{source.stem}.bmp"))
            cv2.imwrite(paths[-1], image)
    return paths


def inference_worker(cfg: CfgNode, paths: List[str], repeats: int, warmup: int, desc: str) -> Dict[str, Any]:
    configure_cpu_math()  # as tools/predict.py does
    result = time_inference(cfg, paths, repeats, warmup, desc)
    result["detections"] = f"{np.median(result['detections']):.0f}"
    result["dtype"] = inference_precision(cfg).dtype_name
    return result


def inference_cfg(config_file: str, opts: List[Any]) -> CfgNode:
    """The config as tools/predict.py builds it, untrained, with score threshold 0: every model returns
    its config's TEST.DETECTIONS_PER_IMAGE detections, so mask pasting costs what it can cost."""
    return setup_inference(config_file, [*opts, "MODEL.WEIGHTS", ""], score_threshold=0.0, allow_untrained=True)


def inference_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    paths = full_size_bmps(workdir, args.warmup + args.repeats)
    cfg = inference_cfg(BASELINE, [])
    measurements = measure_models(inference_cfg, inference_worker, paths, args.repeats, args.warmup)
    return (f"Seconds per full-size {FULL_SIZE[1]}x{FULL_SIZE[0]} image as `tools/predict.py` spends them: "
            f"read the BMP, forward at the test scale (short edge {cfg.INPUT.MIN_SIZE_TEST}), masks pasted at "
            f"full resolution, results on the CPU. Untrained models with score threshold 0, so each returns "
            f"`TEST.DETECTIONS_PER_IMAGE` detections (column `detections`: median per image). {len(paths)} "
            f"images taken in turn; warm-up: {args.warmup} images, not timed. Peak RSS: the model's own process "
            f"(model, image, full-size masks).\n\n" + results_table(measurements, "s/image", measurements[0]),
            {"models": measurements})


def write_classifier_checkpoint(path: Path) -> Path:
    """A classifier checkpoint as tools/train_classifier.py writes it: the Lite2 config (128 px crops),
    ImageNet weights and an untrained head; its cost does not depend on the weights."""
    from detectron2_myeloma.classifier.config import get_classifier_cfg
    from detectron2_myeloma.classifier.model import build_classifier, classifier_checkpoint

    cfg = get_classifier_cfg()
    cfg.merge_from_file(str(REPO / CLASSIFIER))
    torch.save(classifier_checkpoint(build_classifier(cfg), cfg), path)
    return path


def classifier_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    paths = full_size_bmps(workdir, args.warmup + args.repeats)
    checkpoint = write_classifier_checkpoint(workdir / "classifier.pth")
    hook = ["MODEL.POST_HOOKS", ["CellClassifierHook"], "MODEL.CELL_CLASSIFIER.WEIGHTS", str(checkpoint)]
    tables, measured = [], {}
    for cells in (CELLS_PER_IMAGE, inference_cfg(RMASK, []).TEST.DETECTIONS_PER_IMAGE):
        cap = ["TEST.DETECTIONS_PER_IMAGE", cells]
        measurements = measure_all([
            (name, inference_worker, (inference_cfg(RMASK, [*cap, *opts]), paths, args.repeats, args.warmup))
            for name, opts in ((f"R-Mask R-CNN alone, {cells} detections", []),
                               (f"R-Mask R-CNN + cell classifier hook, {cells} detections", hook))])
        measured[f"{cells} detections"] = measurements
        hook_cost = measurements[1].median - measurements[0].median
        tables.append(results_table(measurements, "s/image", measurements[0])
                      + f"\n\nThe hook's own cost: {hook_cost:.2f} s per image for {cells} cells.")
    return (f"The `MODEL.CELL_CLASSIFIER` post-hook (`{CLASSIFIER}`: EfficientNet-Lite2 on 128 px crops cut "
            f"from the full-resolution image), measured as in Inference with the detections capped: every "
            f"detection of the untrained one-class detector is a cell, so the hook classifies `detections` "
            f"crops per image. {CELLS_PER_IMAGE} is about what a trained detector keeps on a SegPC image (the "
            f"bundled images hold 2-12 annotated cells, 6.4 on average); "
            f"{inference_cfg(RMASK, []).TEST.DETECTIONS_PER_IMAGE} is the config's cap.\n\n"
            + "\n\n".join(tables), measured)


# --- training ------------------------------------------------------------------------------------
def training_worker(cfg: CfgNode, repeats: int, warmup: int, desc: str) -> Dict[str, Any]:
    configure_cpu_math()  # as tools/train_net.py does
    result = time_training(Trainer, cfg, repeats, warmup, desc)
    result["data wait (s, median)"] = format_number(np.median(result.pop("data_seconds")))
    result["dtype"] = training_precision(cfg).dtype_name
    return result


def training_cfg(config_file: str, opts: List[Any], output_dir: str) -> CfgNode:
    """The config's own training settings on the bundled ``segpc_mini_train``; writers go to ``output_dir``."""
    cfg = load_config(str(REPO / config_file),
                      [*opts, "DATASETS.TRAIN", ("segpc_mini_train",), "OUTPUT_DIR", output_dir])
    cfg.MODEL.DEVICE = available_device(cfg.MODEL.DEVICE)  # as tools/train_net.py does
    return cfg


def training_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    def make_cfg(config_file: str, opts: List[Any]) -> CfgNode:
        return training_cfg(config_file, opts, tempfile.mkdtemp(dir=workdir))

    cfg = training_cfg(BASELINE, [], "")
    measurements = measure_models(make_cfg, training_worker, args.training_repeats, args.training_warmup)
    return (f"Seconds per iteration of `detectron2_myeloma.engine.trainer.Trainer`'s step object (`run_step`: data wait, forward, "
            f"backward, optimiser step; hooks excluded) on `segpc_mini_train` with each config's own settings: "
            f"{cfg.SOLVER.IMS_PER_BATCH} images per batch, {cfg.INPUT.CROP.SIZE[0]}x{cfg.INPUT.CROP.SIZE[1]} crops, "
            f"{cfg.DATALOADER.NUM_WORKERS} data-loader workers, mixed precision as the config's "
            f"`SOLVER.AMP.ENABLED` ({cfg.SOLVER.AMP.ENABLED}: auto) picks on this CPU (column `dtype`). "
            f"Warm-up: {args.training_warmup} iterations, not timed. `data wait`: the part of an iteration spent "
            f"waiting for its batch. Peak RSS: the main process (data-loader workers not counted).\n\n"
            + results_table(measurements, "s/iteration", measurements[0]), {"models": measurements})


# --- SegPC scorer --------------------------------------------------------------------------------
def scorer_worker(scorer: str, repeats: int, warmup: int, desc: str) -> Dict[str, Any]:
    """Time one scorer on the bundled ground truth with predictions that find every cell 9x13 px off,
    plus the three false positives per image of the tests' "extra" predictions."""
    from detectron2_myeloma.data.segpc_format import resize_to_submission
    from detectron2_myeloma.evaluation.segpc_metrics import score_segpc
    from detectron2_myeloma.evaluation.submission_score import load_gt_dir

    gt = load_gt_dir(str(SEGPC_MINI / "y"))
    cells = {image_id: [resize_to_submission(m) for m in masks] for image_id, masks in gt.items()}
    perturbed = perturbations(cells, missing_image=min(cells))  # uses "shifted" and "extra" only
    predictions = {i: perturbed["shifted"][i] + perturbed["extra"][i][len(cells[i]):] for i in cells}
    score = {"official": lambda: official_miou(gt, predictions),
             "vectorised": lambda: score_segpc(gt, predictions).miou}[scorer]
    miou = []
    seconds = time_calls(lambda: miou.append(score()), repeats, warmup, desc)
    return {"seconds": seconds, "mIoU": f"{miou[-1]:.6f}", "images": str(len(gt)),
            "GT cells": str(sum(map(len, gt.values()))), "predictions": str(sum(map(len, predictions.values())))}


def scorer_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    official, vectorised = measure_all([
        (name, scorer_worker, (scorer, args.repeats, args.warmup))
        for name, scorer in (("loop transcription of the official scorer", "official"),
                             ("`score_segpc` (vectorised)", "vectorised"))])
    agree = abs(float(official.columns["mIoU"]) - float(vectorised.columns["mIoU"])) < 1e-6
    return (f"One scoring of every bundled image (`datasets/segpc_mini/train/y`) by `official_miou` of "
            f"`testing/segpc_reference.py` (baseline) and by `score_segpc` (which also computes "
            f"Dice, semantic metrics, P/R and AP), on the same predictions. Speed-up: "
            f"{official.median / vectorised.median:.1f}x; the mIoUs {'agree' if agree else 'DISAGREE'} "
            f"(to 1e-6).\n\n" + results_table([official, vectorised], "s/scoring", official),
            {"scorers": [official, vectorised]})


# --- converters ----------------------------------------------------------------------------------
def converter_worker(fmt: str, workdir: str, repeats: int, warmup: int, desc: str) -> Dict[str, Any]:
    """Time ``convert_to_coco`` (what tools/convert_to_coco.py runs) on the bundled SegPC sample, or on
    the tests' main PowerPoint deck holding a full-size picture."""
    from detectron2_myeloma.data.datasets.convert import convert_to_coco

    folder = Path(workdir) / fmt
    folder.mkdir()
    source = SEGPC_MINI
    if fmt == "pptx":
        source = folder / "deck.pptx"
        build_main_deck(source, write_png(folder / "picture.png", width=FULL_SIZE[1], height=FULL_SIZE[0]))
    images = []

    def convert() -> None:
        coco, _ = convert_to_coco(fmt, str(source), str(folder / "coco.json"))
        images.append(len(coco["images"]))

    seconds = time_calls(convert, repeats, warmup, desc)
    return {"seconds": seconds, "images/run": str(images[-1]),
            "images/s": format_number(images[-1] / np.median(seconds))}


def converters_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    measurements = measure_all([
        (name, converter_worker, (fmt, str(workdir), args.repeats, args.warmup))
        for name, fmt in (("SegPC folder (`datasets/segpc_mini/train`)", "segpc"),
                          (f"PowerPoint deck (`build_main_deck`, {FULL_SIZE[1]}x{FULL_SIZE[0]} picture)", "pptx"))])
    return ("`convert_to_coco` (what `tools/convert_to_coco.py` runs: read, validate with pycocotools, write "
            "the json) on the bundled SegPC sample and on the main deck of `tests/data/test_pptx.py` (4 "
            "slides' pictures, every kind of mark) built with a full-size picture.\n\n"
            + results_table(measurements, "s/run"), {"converters": measurements})


# --- speed-ups, one at a time ---------------------------------------------------------------------
def coco_settings() -> List[Any]:
    """Detectron2's settings for the keys the shipped configs tune: its defaults, and the RPN counts of
    its Base-RCNN-FPN.yaml (the FPN configs every Detectron2 user starts from)."""
    defaults = get_cfg()
    return ["MODEL.RPN.PRE_NMS_TOPK_TRAIN", 2000, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 1000,
            "MODEL.RPN.PRE_NMS_TOPK_TEST", 1000, "MODEL.RPN.POST_NMS_TOPK_TEST", 1000,
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", defaults.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
            "MODEL.FPN.OUT_CHANNELS", defaults.MODEL.FPN.OUT_CHANNELS,
            "MODEL.ROI_MASK_HEAD.CONV_DIM", defaults.MODEL.ROI_MASK_HEAD.CONV_DIM,
            "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", defaults.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO", defaults.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO,
            "MODEL.CHANNELS_LAST", False, "SOLVER.AMP.ENABLED", False, "TEST.AMP.ENABLED", False]


def speedup_steps() -> List[Tuple[str, List[Any]]]:
    """``(name, opts)``: R-Mask R-CNN's config with Detectron2's settings, then each shipped setting
    put back in turn (opts shrink), ending at the shipped config itself (empty opts). The second row is
    a side step (one training scale, so every batch has one shape) that the third row undoes again."""
    shipped = load_config(str(REPO / RMASK))
    coco = coco_settings()
    overrides = {**dict(zip(coco[::2], coco[1::2])), "INPUT.CROP.ENABLED": False}
    steps = [("Detectron2 settings (multi-scale full images, COCO counts and widths, fp32)", dict(overrides)),
             (f"+ one training scale ({shipped.INPUT.MIN_SIZE_TEST}): every batch has the same shape",
              {**overrides, "INPUT.MIN_SIZE_TRAIN": (shipped.INPUT.MIN_SIZE_TEST,)})]
    for name, keys in [
        (f"+ {shipped.INPUT.CROP.SIZE[0]} px training crops (multi-scale as shipped)", ["INPUT.CROP.ENABLED"]),
        ("+ cell-sized proposal and RoI counts", ["MODEL.RPN.PRE_NMS_TOPK_TRAIN", "MODEL.RPN.POST_NMS_TOPK_TRAIN",
                                                  "MODEL.RPN.PRE_NMS_TOPK_TEST", "MODEL.RPN.POST_NMS_TOPK_TEST",
                                                  "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE"]),
        ("+ FPN width 128", ["MODEL.FPN.OUT_CHANNELS"]),
        ("+ mask head width 128", ["MODEL.ROI_MASK_HEAD.CONV_DIM"]),
        ("+ fixed RoIAlign sampling (2x2)", ["MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO",
                                             "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO"]),
        ("+ channels-last", ["MODEL.CHANNELS_LAST"]),
        (f"+ mixed precision 'auto', training and inference: {resolve_precision(None, 'cpu').dtype_name} on "
         f"this CPU (= shipped config)", ["SOLVER.AMP.ENABLED", "TEST.AMP.ENABLED"]),
    ]:
        for key in keys:
            del overrides[key]
        steps.append((name, dict(overrides)))
    assert not steps[-1][1], f"settings left over: {steps[-1][1]}"
    return [(name, [item for pair in opts.items() for item in pair]) for name, opts in steps]


def speedups_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    steps = speedup_steps()
    training = measure_all([(name, training_worker, (training_cfg(RMASK, opts, tempfile.mkdtemp(dir=workdir)),
                                                     args.training_repeats, args.training_warmup))
                            for name, opts in steps])
    paths = full_size_bmps(workdir, args.warmup + args.repeats)
    inference = measure_all([(name, inference_worker, (inference_cfg(RMASK, opts), paths, args.repeats, args.warmup))
                             for name, opts in steps])
    overall = training[0].median / training[-1].median, inference[0].median / inference[-1].median
    options = "\n".join(f"- {name}: " + (f"`{' '.join(map(str, opts))}`" if opts else "none") for name, opts in steps)
    return (f"`{RMASK}` with Detectron2's settings for the keys it tunes, then each shipped setting in turn; "
            f"every row keeps the changes above it. Training as in Training (batch of 4, "
            f"{args.training_warmup} warm-up and {args.training_repeats} timed iterations), inference as in "
            f"Inference. Shipped config over Detectron2 settings: {overall[0]:.1f}x faster training, "
            f"{overall[1]:.1f}x faster inference.\n\n### Training (s/iteration)\n\n"
            + results_table(training, "s/iteration", training[0], stepwise=True)
            + "\n\n### Inference (s/full-size image)\n\n"
            + results_table(inference, "s/image", inference[0], stepwise=True)
            + f"\n\nOverrides of each row (on top of the shipped config):\n\n{options}",
            {"training": training, "inference": inference})


# --- float32 and bfloat16 side by side -----------------------------------------------------------
# An AVX-512 CPU with native bfloat16 made to run as an AVX2 one: ATen's kernels and oneDNN's are
# restricted to AVX2, and PyTorch's capability queries (so the precision policy) see AVX2.
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
PRECISIONS = (("float32 (`AMP.ENABLED False`)", False), ("bfloat16 forced (`AMP.ENABLED True`)", True),
              ("shipped config (`AMP.ENABLED` None: auto)", None))


def precision_opts(setting: Optional[bool]) -> List[Any]:
    return [] if setting is None else ["SOLVER.AMP.ENABLED", setting, "TEST.AMP.ENABLED", setting]


def precision_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    # More repeats than elsewhere: 'auto' and its forced twin are the same computation, so their ratio
    # shows this run's noise, which should stay well under the 10% that would hide a wrong choice.
    repeats, image_repeats = max(args.training_repeats, 6), max(args.repeats, 5)
    paths = full_size_bmps(workdir, args.warmup + image_repeats)
    cpu = cpu_features()
    cpus = [(f"This CPU ({cpu.describe()})", None)]
    if cpu.native_bf16:
        cpus.append(("The same CPU restricted to AVX2 (`" + " ".join(f"{k}={v}" for k, v in AVX2_ONLY.items())
                     + "`: no native bfloat16)", AVX2_ONLY))
    parts, measured = [], {}
    for label, env in cpus:
        training = measure_all([(name, training_worker, (training_cfg(RMASK, precision_opts(setting),
                                                                      tempfile.mkdtemp(dir=workdir)),
                                                         repeats, args.training_warmup))
                                for name, setting in PRECISIONS], env)
        inference = measure_all([(name, inference_worker, (inference_cfg(RMASK, precision_opts(setting)), paths,
                                                           image_repeats, args.warmup))
                                 for name, setting in PRECISIONS], env)
        measured.update({f"{label}: training": training, f"{label}: inference": inference})
        ratios = [f"{m[1].median / m[0].median:.2f}x" for m in (training, inference)]
        auto = [f"{m[2].median / m[0].median:.2f}x" for m in (training, inference)]
        parts.append(f"### {label}\n\nbfloat16 over float32: {ratios[0]} the time per training iteration, "
                     f"{ratios[1]} per image; the shipped config ('auto', column `dtype`): {auto[0]} and "
                     f"{auto[1]} float32's.\n\nTraining (s/iteration):\n\n"
                     + results_table(training, "s/iteration", training[0])
                     + "\n\nInference (s/full-size image):\n\n" + results_table(inference, "s/image", inference[0]))
    return (f"`{RMASK}` trained ({args.training_warmup} warm-up and {repeats} timed iterations, as in Training) "
            f"and run on full-size images ({args.warmup} warm-up and {image_repeats} timed, as in Inference) in float32, in forced bfloat16 and as shipped, where "
            f"`SOLVER.AMP.ENABLED` / `TEST.AMP.ENABLED` are None (auto): bfloat16 only where the CPU has it "
            f"natively (`detectron2_myeloma/modeling/precision.py`). Ratios are to float32 on the same CPU."
            f"\n\n" + "\n\n".join(parts), measured)


# --- loss at equal wall-clock time ---------------------------------------------------------------
def equal_time_worker(cfg: CfgNode, budget_s: float, desc: str) -> Dict[str, Any]:
    """Train from the ImageNet start for ``budget_s`` seconds with the config's learning-rate schedule
    (the iteration under way at the budget finishes); the loss reached is the median total loss of
    the last 5 iterations."""
    from detectron2.utils.env import seed_all_rng

    seed_all_rng(1)
    step = training_step(Trainer, cfg, schedule_lr=True)
    start = time.perf_counter()
    with EventStorage(0) as storage:
        while time.perf_counter() - start < budget_s:
            step()
            storage.iter += 1
        losses = [value for value, _ in storage.history("total_loss").values()]
    elapsed = time.perf_counter() - start
    return {"seconds": [elapsed / len(losses)], "iterations": str(len(losses)),
            "total loss (median of last 5)": f"{np.median(losses[-5:]):.3f}", "first loss": f"{losses[0]:.3f}"}


def equal_time_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    steps = speedup_steps()
    variants = [("Detectron2 settings", steps[0][1]), ("shipped config", steps[-1][1])]
    measurements = measure_all([
        (name, equal_time_worker, (training_cfg(RMASK, opts, tempfile.mkdtemp(dir=workdir)), args.budget))
        for name, opts in variants])
    return (f"`{RMASK}` trained on `segpc_mini_train` for {args.budget:.0f} s of wall-clock time each, from "
            f"the same ImageNet start and seed, with Detectron2's settings (first row of Speed-ups) and as "
            f"shipped; the median column is seconds per iteration.\n\n"
            + results_table(measurements, "s/iteration", measurements[0]), {"configs": measurements})


# --- large images: sliced inference ---------------------------------------------------------------
MOSAIC_SIDES = (1, 2, 3, 4, 6)  # frames per side of the mosaics: 3.1, 12.5, 28, 50 and 113 megapixels
PNG_SIDE = 4  # the mosaic also written as a PNG, decoded whole, beside its tiled TIFF


def write_mosaic(folder: Path, frames: List[np.ndarray], side: int, suffix: str) -> str:
    """A ``side`` x ``side`` mosaic of ``frames`` (the bundled 2040x1536 frames: a slide-region stand-in
    of real cells) as a tiled, deflate-compressed TIFF (read a tile at a time) or another format (read
    whole)."""
    rows = [np.concatenate([frames[(r * side + c) % len(frames)] for c in range(side)], axis=1) for r in range(side)]
    mosaic = np.concatenate(rows, axis=0)
    path = str(folder / f"mosaic_{side}x{side}{suffix}")
    if suffix == ".tif":
        tifffile.imwrite(path, mosaic[:, :, ::-1], tile=(512, 512), compression="zlib", photometric="rgb")
    else:
        cv2.imwrite(path, mosaic)
    return path


def large_image_worker(path: str, warmup_path: str, desc: str) -> Dict[str, Any]:
    """tools/predict.py's detection of one image with the shipped models (detector and cell classifier,
    score threshold 0.5), after an untimed run on one frame; its tiles, cells and seconds."""
    configure_cpu_math()
    cfg = setup_inference(None, [], score_threshold=0.5)
    cell_class, _ = cell_and_nucleus_classes(model_metadata(cfg, None).thing_classes)
    diameter = CELL_DIAMETERS["segpc_mini"]
    predictor = TiledPredictor(build_predictor(cfg, cell_class), cfg, cell_class, diameter)
    with open_regions(warmup_path) as frame:
        predictor(frame, predictor.cell_scale(frame))
    found: Dict[str, Any] = {}

    def run() -> None:
        with open_regions(path) as regions:
            found["shape"] = regions.shape
            found["cells"] = int((predictor(regions, predictor.cell_scale(regions)).classes == cell_class).sum())

    seconds = time_calls(run, repeats=1, warmup=0, desc=desc)
    grid = predictor.grid(path, found["shape"], diameter)
    tiles = 1 if grid is None else len(grid[1]) * len(grid[2])
    megapixels = found["shape"][0] * found["shape"][1] / 1e6
    return {"seconds": seconds, "megapixels": f"{megapixels:.1f}", "tiles": tiles, "cells found": found["cells"],
            "s / megapixel": format_number(seconds[0] / megapixels)}


def large_images_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    paths = sorted((SEGPC_MINI / "x").iterdir())
    frames = [read_image(str(p)) for p in paths]
    tiffs = [write_mosaic(workdir, frames, side, ".tif") for side in MOSAIC_SIDES]
    png = write_mosaic(workdir, frames, PNG_SIDE, ".png")
    frame = str(paths[0])
    variants = [(f"{os.path.basename(p)} (tiled TIFF)", large_image_worker, (p, frame)) for p in tiffs]
    variants.append((f"{os.path.basename(png)} (PNG, decoded whole)", large_image_worker, (png, frame)))
    measurements = measure_all(variants)
    for measurement, (_, _, (path, _)) in zip(measurements, variants):
        logger.info("running tools/predict.py on %s", os.path.basename(path))
        with tempfile.TemporaryDirectory(dir=workdir) as output:
            seconds, peak = run_script(str(REPO / "tools" / "predict.py"), [
                "--input", path, "--output", os.path.join(output, "predictions"),
                "--cell-diameter", str(CELL_DIAMETERS["segpc_mini"]), "--score-threshold", "0.5"])
        measurement.columns.update({"tools/predict.py (s)": format_number(seconds),
                                    "its peak RSS (MiB)": f"{peak:.0f}"})
    shipped = setup_inference(None, [], score_threshold=0.5)
    tile, target = shipped.TEST.TILES.SIZE, shipped.INPUT.CELL_DIAMETER.TEST
    return ("`tools/predict.py` on images far larger than a camera frame: mosaics of the bundled "
            f"2040x1536 frames ({', '.join(f'{s}x{s}' for s in MOSAIC_SIDES)} frames), predicted with the "
            "shipped detector and cell classifier (score threshold 0.5, cell diameter 319.9 px) tile by tile "
            f"(`TEST.TILES`: {tile} model px = {math.ceil(tile * CELL_DIAMETERS['segpc_mini'] / target)} image px "
            "tiles overlapping by 2 cell diameters); the 1x1 "
            "mosaic is one frame, predicted whole. One timed run each, after an untimed run on one frame, "
            "in a fresh process: peak RSS is that process's, the models included. Then `tools/predict.py` "
            "on the same image in a process of its own, every output written (overlay, COCO json, CSV, "
            "GeoJSON, case report), model loading included. A tiled TIFF is read a tile at a time, so its "
            "memory should not grow with the image; a PNG is decoded whole first (3 bytes per pixel "
            "more).\n\n" + results_table(measurements, "s/image"), {"images": measurements})


# --- profiles ------------------------------------------------------------------------------------
def profile_training_worker(cfg: CfgNode, warmup: int, desc: str) -> Dict[str, Any]:
    step = training_step(Trainer, cfg)
    with EventStorage(0):
        return profile_call(step, warmup, desc)


def profile_inference_worker(cfg: CfgNode, paths: List[str], warmup: int, desc: str) -> Dict[str, Any]:
    return profile_call(inference_step(cfg, paths)[0], warmup, desc)


def profile_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    paths = full_size_bmps(workdir, 1)
    jobs = {
        "training": (profile_training_worker, (training_cfg(RMASK, [], tempfile.mkdtemp(dir=workdir)),
                                               max(args.training_warmup, 2))),
        "inference": (profile_inference_worker, (inference_cfg(RMASK, []), paths, max(args.warmup, 2))),
    }
    parts = []
    for name, (worker, worker_args) in jobs.items():
        logger.info("profiling %s", name)
        result = run_in_fresh_process(worker, *worker_args, f"profile {name}")
        path = Path(args.output).parent / f"profile_{name}.txt"
        path.write_text(f"{RMASK}, one {name} call after warm-up, {result['seconds'][0]:.2f} s under the "
                        f"profiler (self CPU time per op):\n\n{result['table']}\n")
        total = sum(seconds for _, seconds, _ in result["top"])
        rows = [(f"`{op}`", format_number(seconds), f"{100 * seconds / total:.0f}%", calls)
                for op, seconds, calls in result["top"][:8]]
        parts.append(f"### {name.capitalize()}: {result['seconds'][0]:.2f} s under the profiler "
                     f"([full table]({path.name}))\n\n"
                     + markdown_table(["op", "self CPU (s)", "share of the top 30", "calls"], rows))
    return (f"`{RMASK}` as shipped: one training iteration (batch of 4 crops) and one full-size inference "
            f"(untrained, score threshold 0: {inference_cfg(RMASK, []).TEST.DETECTIONS_PER_IMAGE} detections), "
            f"after warm-up, under `torch.profiler`.\n\n" + "\n\n".join(parts), {})


# --- mask heads, nucleus, test-time augmentation (issue 31) --------------------------------------------
POINT_NUCLEUS = "configs/SegPC/rmask_rcnn_lite2_fpn_d80_point_nucleus.yaml"
NUCLEUS_HEAD = "nucleus head"  # the shipped nucleus head without its point MLP, on segpc-rmask-lite2
# name -> (config, weights, overrides): trained weights of each kind, so that every variant outlines the
# cells the shipped detector finds (the detector is the same in all).
MASK_HEAD_VARIANTS: Dict[str, Tuple[str, str, List[Any]]] = {
    "today's head (segpc-rmask-lite2)": ("configs/SegPC/rmask_rcnn_lite2_fpn_d80.yaml", "segpc-rmask-lite2", []),
    "+ nucleus channel": ("configs/SegPC/rmask_rcnn_lite2_fpn_d80_nucleus.yaml", NUCLEUS_HEAD, []),
    "+ point refinement, nucleus (segpc-rmask-lite2-nucleus)": (POINT_NUCLEUS, "segpc-rmask-lite2-nucleus", []),
    **{f"+ point refinement, nucleus, cells at {d} px": (
        POINT_NUCLEUS, "segpc-rmask-lite2-nucleus", ["INPUT.CELL_DIAMETER.TEST", float(d)]) for d in (96, 112)},
    "+ point refinement, nucleus, TTA: flip (2 views)": (
        POINT_NUCLEUS, "segpc-rmask-lite2-nucleus", ["TEST.AUG.ENABLED", True]),
    "+ point refinement, nucleus, TTA: 8 symmetries (make_submission.py)": (
        POINT_NUCLEUS, "segpc-rmask-lite2-nucleus", SYMMETRY_VIEWS),
    "today's head, TTA: 8 symmetries": ("configs/SegPC/rmask_rcnn_lite2_fpn_d80.yaml", "segpc-rmask-lite2",
                                        SYMMETRY_VIEWS),
}


def nucleus_head_weights(workdir: Path) -> str:
    """The shipped nucleus head less its point MLP, as a weights file on segpc-rmask-lite2."""
    head = load_checkpoint(resolve_weights("segpc-rmask-lite2-nucleus"))["model"]
    path = workdir / "nucleus_head.pth"
    save_weights({k: v for k, v in head.items() if ".point_head." not in k}, str(path), "segpc-rmask-lite2")
    return str(path)


def mask_heads_section(args: argparse.Namespace, workdir: Path) -> SectionResult:
    paths = full_size_bmps(workdir, args.warmup + args.repeats)
    weights = {NUCLEUS_HEAD: nucleus_head_weights(workdir)}
    variants = []
    for name, (config_file, model, opts) in MASK_HEAD_VARIANTS.items():
        cfg = setup_inference(config_file, [*opts, "MODEL.WEIGHTS", weights.get(model, model)], score_threshold=0.5)
        variants.append((name, inference_worker, (cfg, paths, args.repeats, args.warmup)))
    measurements = measure_all(variants)
    return (f"Seconds per full-size {FULL_SIZE[1]}x{FULL_SIZE[0]} frame as `tools/predict.py` spends them (read "
            f"the BMP, cells resized to 80 px unless the row says otherwise, detection, masks pasted at full "
            f"resolution; no classifier), for the mask head options of docs/RESULTS.md, \"Outlines and nuclei\". "
            f"Trained weights, score threshold 0.5: every variant outlines the cells the shipped detector finds "
            f"(column `detections`). "
            f"{len(paths)} images taken in turn; warm-up: {args.warmup} images, not timed.\n\n"
            + results_table(measurements, "s/frame", measurements[0]), {"mask_heads": measurements})


def end_to_end(args: argparse.Namespace, workdir: Path) -> SectionResult:
    return end_to_end_section(workdir, full_size_bmps(workdir, END_TO_END_FRAMES + 1))


SECTION_FUNCTIONS: Dict[str, Tuple[str, Callable[[argparse.Namespace, Path], SectionResult]]] = {
    "inference": ("Inference", inference_section),
    "training": ("Training", training_section),
    "classifier": ("Cell classifier hook", classifier_section),
    "scorer": ("SegPC scorer", scorer_section),
    "converters": ("Converters", converters_section),
    "speedups": ("Speed-ups one at a time", speedups_section),
    "precision": ("Float32 and bfloat16 side by side", precision_section),
    "profile": ("Where the time goes", profile_section),
    "equal-time": ("Loss at equal training time", equal_time_section),
    "large-images": ("Large images: sliced inference", large_images_section),
    "mask-heads": ("Mask heads, nucleus and test-time augmentation", mask_heads_section),
    "end-to-end": ("End to end", end_to_end),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=list(SECTION_FUNCTIONS),
                        default=list(SECTION_FUNCTIONS), help="what to measure (default: everything)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before them (default: 1)")
    parser.add_argument("--training-repeats", type=int, default=2, help="timed training iterations per model "
                        "(default: 2; one costs 5-10 inference images on a CPU)")
    parser.add_argument("--training-warmup", type=int, help="untimed iterations before them (default: --warmup)")
    parser.add_argument("--budget", type=float, default=150, help="equal-time: seconds of training per config")
    parser.add_argument("--output", default="benchmarks/RESULTS.md", help="markdown report to write")
    parser.add_argument("--update", action="store_true",
                        help="keep the other sections of --output: re-measure only --sections, each marked "
                             "with this run's command, date, CPU and commit")
    args = parser.parse_args(argv)
    args.training_warmup = args.warmup if args.training_warmup is None else args.training_warmup
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")

    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(sys.argv[0]), *sys.argv[1:]])
    machine = machine_info(str(REPO))
    preamble = (f"Command: `{command}`\n\nMachine (the CPU is shared: absolute times move with other users' "
                f"load, ratios within one run much less):\n\n" + markdown_table(["item", "value"], machine))
    if args.update:
        details = dict(machine)
        note = (f"_Measured by a later run than the rest: `{command}` ({details['date']}, {details['CPU']}, "
                f"{details['CPU capability (PyTorch)']}, commit {details['git commit']})._")
        try:
            report = MarkdownReport.updating(args.output, note, details)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    else:
        report = MarkdownReport(args.output, "Benchmarks", preamble, {"command": command, "machine": dict(machine)})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="benchmark-") as workdir:
        for section in args.sections:
            title, run_section = SECTION_FUNCTIONS[section]
            logger.info("section %s", section)
            report.add_section(title, *run_section(args, Path(workdir)))
    minutes = (time.perf_counter() - start) / 60
    if not args.update:
        report.write(footer=f"{FOOTER_START} {minutes:.1f} min.")
    logger.info("wrote %s (%.1f min)", args.output, minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
