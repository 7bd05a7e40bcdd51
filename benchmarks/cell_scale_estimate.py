#!/usr/bin/env python
"""How well does the tools' cell-diameter estimate (engine/cell_scale.py) stand in for the true one?

    python -m benchmarks.cell_scale_estimate [--output docs/cell_scale] [--report docs/RESULTS.md]

On the full-size val frames of both microscopes (which no shipped model saw at any resolution), resized
by each of FACTORS, and on the reduced val frames (512x512, at their own size): the shipped detector's
estimate of each image's median cell diameter against the true one (the microscope's median times the
resize factor; also against the frame's own annotated median), and the SegPC mIoU (official scorer,
score threshold 0.05 as make_submission) and the cells found at score >= 0.5 (as predict) when the
image is predicted at the estimate and at the true diameter. Writes ``estimates.json``, ``estimates.png``
and the docs/RESULTS.md section ``cell_scale``.
"""
import argparse
import glob
import os
import tempfile
import time
from collections import defaultdict
from typing import Any, Dict, Iterator, List, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog
from tqdm import tqdm

from benchmarks.benchmarking import REPO, machine_info, markdown_table
from benchmarks.comparison import replace_section
from benchmarks.provenance import git_commit
from detectron2_myeloma.data.datasets.builtin import (CELL_DIAMETERS, LOWRES_CELL_DIAMETERS, SEGPC_MINI_VAL_IDS,
                                             SEGPC_NIKON_VAL_IDS)
from detectron2_myeloma.data.images import read_image, read_mask, read_record_image
from detectron2_myeloma.data.regions import ArrayRegions
from detectron2_myeloma.data.datasets.segpc import segpc_microscope
from detectron2_myeloma.data.segpc_format import resize_to_submission
from detectron2_myeloma.data.statistics import area_diameter
from detectron2_myeloma.engine.cell_scale import AUTO, equivalent_diameters
from detectron2_myeloma.utils.device import configure_cpu_math
from detectron2_myeloma.engine.defaults import setup_inference
from detectron2_myeloma.engine.predictor import build_predictor
from detectron2_myeloma.engine.tiling import TiledPredictor
from detectron2_myeloma.evaluation.segpc_metrics import score_segpc
from detectron2_myeloma.structures import CellDetections, CellScale
from detectron2_myeloma.utils.atomic import write_atomic, write_json_atomic

FACTORS = (0.25, 0.33, 0.5, 0.75, 1.0, 1.5, 2.0)
TOLERANCE = 0.15  # the estimate within 15% of the true median
COUNT_SCORE = 0.5  # cells counted as tools/predict.py counts them


def frames(datasets: str) -> Iterator[Tuple[str, str, str, float]]:
    """(set name, image path, masks folder, true median cell diameter) of every frame measured."""
    for name, folder, ids, diameter in (
            ("Olympus full-size", "segpc_mini/train", SEGPC_MINI_VAL_IDS, CELL_DIAMETERS["segpc_mini"]),
            ("Nikon full-size", "segpc_nikon/train", SEGPC_NIKON_VAL_IDS, CELL_DIAMETERS["segpc_nikon"])):
        for image_id in ids:
            yield name, glob.glob(os.path.join(datasets, folder, "x", f"{image_id}.*"))[0], \
                os.path.join(datasets, folder, "y"), diameter
    for path in sorted(glob.glob(os.path.join(datasets, "segpc_lowres", "val", "x", "*"))):
        image_id = os.path.splitext(os.path.basename(path))[0]
        yield ("reduced 512x512", path, os.path.join(datasets, "segpc_lowres", "val", "y"),
               LOWRES_CELL_DIAMETERS[segpc_microscope(image_id)])


def gt_masks(y_dir: str, image_id: str) -> List[np.ndarray]:
    return [read_mask(p) for p in sorted(glob.glob(os.path.join(y_dir, f"{image_id}_*")))]


def submission_masks(detections: CellDetections) -> List[np.ndarray]:
    return [resize_to_submission(detections.union_mask([i])) for i in range(len(detections))]


def measure(datasets: str, limit: int) -> List[Dict[str, Any]]:
    """Each group of images (a set at one resize factor) is measured as one run of the tools measures a
    folder: with --cell-diameter auto, images of one size sharing the median of their cells."""
    configure_cpu_math()
    cfg = setup_inference(None, ["MODEL.POST_HOOKS", "[]"], 0.05, max_cells=100)
    detector = build_predictor(cfg, 0)
    groups: Dict[Tuple[str, float], List[Tuple[str, str, float]]] = defaultdict(list)
    for set_name, path, y_dir, diameter in frames(datasets):
        for factor in (FACTORS if "full-size" in set_name else (1.0,)):
            if set_name != "reduced 512x512" or len(groups[(set_name, factor)]) < limit:
                groups[(set_name, factor)].append((path, y_dir, diameter))
    rows = []
    progress = tqdm(total=sum(len(g) for g in groups.values()), desc="images", unit="image")
    for (set_name, factor), members in groups.items():
        predictor = TiledPredictor(detector, cfg, 0, AUTO)
        with tempfile.TemporaryDirectory() as folder:
            images = {}
            for path, y_dir, diameter in members:
                image = read_image(path)
                if factor != 1.0:
                    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
                    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
                images[os.path.join(folder, os.path.basename(path).rsplit(".", 1)[0] + ".png")] = image
            for file, image in images.items():
                cv2.imwrite(file, image)
            start = time.perf_counter()
            predictor.cell_scale.survey(list(images))
            seconds = (time.perf_counter() - start) / len(images)
            for (file, image), (path, y_dir, diameter) in zip(images.items(), members):
                image_id = os.path.splitext(os.path.basename(path))[0]
                regions = ArrayRegions(file, image)
                gt = gt_masks(y_dir, image_id)
                true = CellScale(diameter * factor, "true")
                used = predictor.cell_scale(regions)
                own = predictor.cell_scale.own.get(file)
                row = {"set": set_name, "image": image_id, "y_dir": y_dir, "factor": factor,
                       "shape": list(image.shape[:2]), "true": true.diameter, "estimate": used.diameter,
                       "own_estimate": own.diameter if own else float("nan"), "seconds": seconds,
                       "frame_median": factor * float(np.median(area_diameter([np.count_nonzero(m) for m in gt]))),
                       "gt_cells": len(gt), "detail": used.detail}
                for key, scale in (("at_true", true), ("at_estimate", used)):
                    found = predictor(regions, scale)
                    row[key] = {"masks": submission_masks(found), "scores": found.scores.tolist(),
                                "cells": int((found.scores >= COUNT_SCORE).sum())}
                rows.append(row)
                progress.update()
    progress.close()
    return rows


TRAINING_SETS = ("segpc_lowres_train_fit", "segpc_nikon_fit", "segpc_mini_train")  # the shipped model's


def training_frames_bias() -> Dict[str, Any]:
    """Does the estimate measure cells as the annotations do? On each of the shipped detector's training
    frames, the median equivalent diameter of its confident cells (predicted at the record's cell
    diameter, as the estimate's last pass is) over the record's diameter; the median over all frames,
    and per set. 1.0: no bias to correct on the frames it learnt."""
    configure_cpu_math()
    cfg = setup_inference(None, ["MODEL.POST_HOOKS", "[]"], 0.05)
    predictor = TiledPredictor(build_predictor(cfg, 0), cfg, 0)
    ratios: Dict[str, List[float]] = {}
    for name in TRAINING_SETS:
        ratios[name] = []
        for record in tqdm(DatasetCatalog.get(name), desc=name, unit="image"):
            image = read_record_image(record)
            found = predictor(ArrayRegions(record["file_name"], image), CellScale(record["cell_diameter"], "record"))
            sizes = equivalent_diameters(found, 0)
            if len(sizes):
                ratios[name].append(float(np.median(sizes)) / record["cell_diameter"])
    return {"detected_over_annotated": float(np.median([r for v in ratios.values() for r in v])),
            "per_set": {name: {"frames": len(v), "median": float(np.median(v))} for name, v in ratios.items()}}


def summarise(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (set, factor): estimate errors, mIoU at the true and the estimated diameter."""
    groups: Dict[Tuple[str, float], List[Dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["set"], row["factor"])].append(row)
    table = []
    for (set_name, factor), members in groups.items():
        ratio = np.array([r["estimate"] / r["true"] for r in members])
        own = np.array([r["own_estimate"] / r["true"] for r in members])
        to_frame = np.array([r["estimate"] / r["frame_median"] for r in members])
        gt = {r["image"]: gt_masks(r["y_dir"], r["image"]) for r in members}
        scores = {}
        for key in ("at_true", "at_estimate"):
            scores[key] = score_segpc(gt, {r["image"]: r[key]["masks"] for r in members},
                                      {r["image"]: r[key]["scores"] for r in members}).miou
        table.append({"set": set_name, "factor": factor, "images": len(members),
                      "cells": sum(r["gt_cells"] for r in members),
                      "median_error": float(np.median(np.abs(ratio - 1))),
                      "worst_error": float(np.max(np.abs(ratio - 1))),
                      "within_tolerance": float(np.mean(np.abs(ratio - 1) <= TOLERANCE)),
                      "median_error_to_frame": float(np.median(np.abs(to_frame - 1))),
                      "own_median_error": float(np.nanmedian(np.abs(own - 1))),
                      "own_within_tolerance": float(np.mean(np.abs(own - 1) <= TOLERANCE)),
                      "miou_true": scores["at_true"], "miou_estimate": scores["at_estimate"],
                      "count_difference": float(np.mean([abs(r["at_true"]["cells"] - r["at_estimate"]["cells"])
                                                         for r in members])),
                      "seconds": float(np.mean([r["seconds"] for r in members]))})
    return sorted(table, key=lambda t: (t["set"], t["factor"]))


def plot(rows: List[Dict[str, Any]], path: str) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 5))
    axis = figure.subplots()
    for set_name, marker in (("Olympus full-size", "o"), ("Nikon full-size", "s"), ("reduced 512x512", ".")):
        chosen = [r for r in rows if r["set"] == set_name]
        axis.scatter([r["true"] for r in chosen], [r["estimate"] for r in chosen], marker=marker, s=18,
                     label=set_name, alpha=0.7)
    low, high = 8, 1000
    axis.plot([low, high], [low, high], "k-", lw=0.8)
    for bound in (1 - TOLERANCE, 1 + TOLERANCE):
        axis.plot([low, high], [low * bound, high * bound], "k:", lw=0.8)
    axis.set(xscale="log", yscale="log", xlabel="true median cell diameter (px)",
             ylabel="estimated (px)", title="Cell diameter estimated from the image")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def report(table: List[Dict[str, Any]], rows: List[Dict[str, Any]], output: str) -> str:
    machine = dict(machine_info(str(REPO)))
    lines = [
        f"`python -m benchmarks.cell_scale_estimate` (commit {git_commit(str(REPO))}, {machine['CPU']}, "
        f"{machine['CPU capability (PyTorch)']}, {machine['torch']}).",
        "Each set at each resize factor is one folder, run as `tools/predict.py --cell-diameter auto` runs it: "
        "the shipped detector estimates every image's median cell diameter (the frame size is not used), "
        "images of one size share the median of all their cells (an image 1.5x off the others keeps its own), "
        "and each image is predicted at that estimate and at the true diameter (the microscope's median "
        f"times the resize factor). Error: |estimate / true - 1|; within {TOLERANCE:.0%}: the share of images "
        "whose estimate is that close; each image alone: the image's own estimate, before pooling; to the "
        "frame: the estimate against the frame's own annotated median. mIoU: SegPC "
        "official scorer, threshold 0.05; cells: detections of score >= 0.5 (as tools/predict.py counts), "
        "mean absolute difference per image between the two runs. Seconds: the estimate alone, per image.",
        "",
        markdown_table(["set", "resize", "images", "cells", "median error", "worst error",
                        f"within {TOLERANCE:.0%}", "each image alone: median error", f"alone: within {TOLERANCE:.0%}",
                        "error to the frame's median", "mIoU at true",
                        "mIoU at estimate", "cells differ by", "s / estimate"],
                       [[t["set"], f"{t['factor']:g}x", t["images"], t["cells"], f"{t['median_error']:.1%}",
                         f"{t['worst_error']:.1%}", f"{t['within_tolerance']:.0%}", f"{t['own_median_error']:.1%}",
                         f"{t['own_within_tolerance']:.0%}",
                         f"{t['median_error_to_frame']:.1%}", f"{t['miou_true']:.3f}",
                         f"{t['miou_estimate']:.3f}", f"{t['count_difference']:.2f}", f"{t['seconds']:.1f}"]
                        for t in table]),
        "",
        f"![estimated against true diameter]({os.path.relpath(os.path.join(output, 'estimates.png'), 'docs')})",
    ]
    misses = [r for r in rows if abs(r["estimate"] / r["true"] - 1) > TOLERANCE]
    if misses:
        lines += ["", "Estimates off by more than the tolerance: " + "; ".join(
            f"{r['set']} {r['image']} at {r['factor']:g}x: {r['estimate']:.0f} px for {r['true']:.0f} "
            f"(frame's own median {r['frame_median']:.0f})" for r in misses[:12]) + "."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="datasets")
    parser.add_argument("--output", default="docs/cell_scale")
    parser.add_argument("--report", default="docs/RESULTS.md")
    parser.add_argument("--limit", type=int, default=1000, help="at most this many reduced val frames")
    parser.add_argument("--training-frames-bias", action="store_true",
                        help="instead: the detected / annotated median cell diameter on the training frames")
    args = parser.parse_args()
    if args.training_frames_bias:
        bias = training_frames_bias()
        os.makedirs(args.output, exist_ok=True)
        write_json_atomic(bias, os.path.join(args.output, "training_frames_bias.json"), indent=1)
        print(bias)
        return
    rows = measure(args.datasets, args.limit)
    table = summarise(rows)
    os.makedirs(args.output, exist_ok=True)
    images = [{k: v for k, v in r.items() if k not in ("at_true", "at_estimate", "y_dir")}
              | {"cells_at_true": r["at_true"]["cells"], "cells_at_estimate": r["at_estimate"]["cells"]}
              for r in rows]
    write_json_atomic({"summary": table, "images": images}, os.path.join(args.output, "estimates.json"), indent=1)
    plot(rows, os.path.join(args.output, "estimates.png"))
    text = report(table, rows, args.output)
    print(text)
    with open(args.report) as f:
        results = f.read()
    write_atomic(args.report, replace_section(results, "cell_scale", text))


if __name__ == "__main__":
    main()
