"""A per-case summary of the cells found in a folder of one patient's frames (or one large image):
``report.md``, ``report.json`` and ``report.html``, with a gallery of the classifier's most and least
confident myeloma calls for a person to check.

The myeloma fraction is given with two 95% intervals: Wilson's, which takes every cell as an independent
draw, and a bootstrap over images, which keeps each image's cells together (cells of one frame share
its smear, stain and focus, so they vary together; with few images this interval is the wider and the
honest one).
"""
import datetime
import html
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np
from detectron2.config import CfgNode
from matplotlib.figure import Figure
from scipy.stats import binomtest
from tabulate import tabulate

from ..data.regions import ImageRegions
from ..structures import CellDetections
from ..utils.atomic import write_atomic, write_json_atomic

DISCLAIMER = ("This is a research tool, not a diagnosis. Its cell counts and myeloma calls come from "
              "models trained on the SegPC-2021 images; they have not been validated for clinical use and "
              "must not be used to diagnose, stage or treat a patient.")
GALLERY_SIZE = 8  # cells in each gallery
CROP_PX = 160  # side of a gallery picture
BOOTSTRAP_SAMPLES = 2000


@dataclass
class _Call:
    """A cell the classifier called myeloma, with its picture (kept only while it may enter a gallery)."""
    prob: float
    image: str
    index: int
    crop: np.ndarray = field(repr=False)


@dataclass
class CaseReport:
    """Collects every image's cells (:meth:`add`), then writes the report (:meth:`write`)."""
    cell_class: int
    rows: List[Dict[str, Any]] = field(default_factory=list)
    most: List[_Call] = field(default_factory=list)
    least: List[_Call] = field(default_factory=list)
    classified: bool = False

    def add(self, path: str, image: ImageRegions, detections: CellDetections) -> None:
        """Count one image's cells; cut pictures of the myeloma calls that may enter the galleries."""
        is_cell = detections.classes == self.cell_class
        labels = detections.labels
        row: Dict[str, Any] = {"image": os.path.basename(path), "cells": int(is_cell.sum())}
        if labels is not None:
            self.classified = True
            row["myeloma"] = int((is_cell & (labels == 1)).sum())
            row["other"] = int((is_cell & (labels == 0)).sum())
            calls = np.flatnonzero(is_cell & (labels == 1))
            probs = detections.probs if detections.probs is not None else np.ones(len(detections))
            for i in calls:
                call = None  # its picture is cut once, for either gallery or both
                for gallery, sign in ((self.most, -1), (self.least, 1)):  # kept sorted, best first
                    if len(gallery) < GALLERY_SIZE or sign * probs[i] < sign * gallery[-1].prob:
                        call = call or _Call(float(probs[i]), row["image"], int(i), _cell_picture(image, detections, i))
                        gallery.append(call)
                        gallery.sort(key=lambda c, sign=sign: sign * c.prob)
                        del gallery[GALLERY_SIZE:]
        self.rows.append(row)

    def summary(self) -> Dict[str, Any]:
        """The numbers of the report (what ``report.json`` holds, less the galleries)."""
        cells = sum(r["cells"] for r in self.rows)
        result: Dict[str, Any] = {"images": len(self.rows), "cells": cells, "classified": self.classified}
        if self.classified:
            myeloma = sum(r["myeloma"] for r in self.rows)
            classified = myeloma + sum(r["other"] for r in self.rows)
            result.update(myeloma=myeloma, other=classified - myeloma)
            if classified:
                wilson = binomtest(myeloma, classified).proportion_ci(0.95, method="wilson")
                result["myeloma_fraction"] = myeloma / classified
                result["ci95_wilson"] = [wilson.low, wilson.high]
                result["ci95_bootstrap_images"] = self._bootstrap_interval()
        result["per_image"] = self.rows
        return result

    def _bootstrap_interval(self) -> Optional[List[float]]:
        """95% percentile interval of the pooled fraction, resampling images (None for one image)."""
        myeloma = np.array([r["myeloma"] for r in self.rows])
        classified = myeloma + np.array([r["other"] for r in self.rows])
        if len(self.rows) < 2:
            return None
        rng = np.random.default_rng(0)
        picks = rng.integers(0, len(self.rows), (BOOTSTRAP_SAMPLES, len(self.rows)))
        totals = classified[picks].sum(axis=1)
        fractions = myeloma[picks].sum(axis=1)[totals > 0] / totals[totals > 0]
        return [float(np.percentile(fractions, 2.5)), float(np.percentile(fractions, 97.5))]

    def write(self, folder: str, case: str, model: str) -> None:
        """``report.md``, ``report.json``, ``report.html`` and the gallery pictures into ``folder``."""
        summary = self.summary()
        galleries = []
        for name, title, calls in (("gallery_most_confident.png", "Most confident myeloma calls", self.most),
                                   ("gallery_least_confident.png", "Least confident myeloma calls", self.least)):
            if calls:
                _draw_gallery(calls, title, os.path.join(folder, name))
                galleries.append((title, name, calls))
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        numbers = _numbers_table(summary)
        columns = ["image", "cells", *(["myeloma", "other", "myeloma fraction"] if self.classified else [])]
        per_image = [[r["image"], r["cells"], *([r["myeloma"], r["other"], _fraction(r)] if self.classified else [])]
                     for r in self.rows]
        write_json_atomic({"case": case, "date": date, "model": model, "disclaimer": DISCLAIMER, **summary,
                           "galleries": {title: [{"image": c.image, "index": c.index, "myeloma_prob": c.prob}
                                                 for c in calls] for title, _, calls in galleries}},
                          os.path.join(folder, "report.json"), indent=1)
        md = [f"# Case report: {case}", f"**{DISCLAIMER}**", f"Model: {model}. Written {date}.",
              tabulate(numbers, tablefmt="github", headers=["", "value"]), _interval_note(summary),
              "## Per image", tabulate(per_image, headers=columns, tablefmt="github")]
        for title, name, calls in galleries:
            md += [f"## {title}", f"![{title}]({name})", _gallery_caption(calls)]
        write_atomic(os.path.join(folder, "report.md"), "\n\n".join(p for p in md if p) + "\n")
        body = [f"<h1>Case report: {html.escape(case)}</h1>", f"<p><strong>{html.escape(DISCLAIMER)}</strong></p>",
                f"<p>Model: {html.escape(model)}. Written {date}.</p>", tabulate(numbers, tablefmt="html"),
                f"<p>{html.escape(_interval_note(summary))}</p>", "<h2>Per image</h2>",
                tabulate(per_image, headers=columns, tablefmt="html")]
        for title, name, calls in galleries:
            body += [f"<h2>{title}</h2>", f'<img src="{name}" alt="{title}" style="max-width:100%">',
                     f"<p>{html.escape(_gallery_caption(calls))}</p>"]
        page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Case report: "
                f"{html.escape(case)}</title><style>body{{font-family:sans-serif;max-width:60em;margin:auto}}"
                "td,th{padding:2px 8px;text-align:right}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
        write_atomic(os.path.join(folder, "report.html"), page)


def describe_model(cfg: CfgNode) -> str:
    """The models behind a report: the detector's weights and, where it ran, the cell classifier's."""
    text = f"detector {cfg.MODEL.WEIGHTS}"
    if "CellClassifierHook" in cfg.MODEL.POST_HOOKS:
        text += f", cell classifier {cfg.MODEL.CELL_CLASSIFIER.WEIGHTS}"
    return text


def _fraction(row: Dict[str, Any]) -> str:
    classified = row["myeloma"] + row["other"]
    return f"{row['myeloma'] / classified:.1%}" if classified else ""


def _numbers_table(summary: Dict[str, Any]) -> List[Tuple[str, str]]:
    rows = [("images", str(summary["images"])), ("cells found", str(summary["cells"]))]
    if not summary["classified"]:
        return rows + [("myeloma calls", "not available: the cell classifier did not run")]
    rows += [("called myeloma", str(summary["myeloma"])), ("called other", str(summary["other"]))]
    if "myeloma_fraction" in summary:
        low, high = summary["ci95_wilson"]
        rows.append(("myeloma fraction of the classified cells", f"{summary['myeloma_fraction']:.1%}"))
        rows.append(("95% interval, cells independent (Wilson)", f"{low:.1%} - {high:.1%}"))
        if summary["ci95_bootstrap_images"] is not None:
            low, high = summary["ci95_bootstrap_images"]
            rows.append((f"95% interval, bootstrap over {summary['images']} images", f"{low:.1%} - {high:.1%}"))
    return rows


def _interval_note(summary: Dict[str, Any]) -> str:
    if "myeloma_fraction" not in summary:
        return ""
    return ("Wilson's interval treats every cell as an independent draw; cells of one image vary together "
            "(smear, stain, focus), so the bootstrap over images, which resamples whole images, is the one to "
            "quote when the two differ" + (" (one image: no bootstrap)." if summary["images"] < 2 else "."))


def _gallery_caption(calls: List[_Call]) -> str:
    return "; ".join(f"{i + 1}: {c.image} #{c.index}, myeloma probability {c.prob:.2f}" for i, c in enumerate(calls))


def _cell_picture(image: ImageRegions, detections: CellDetections, index: int) -> np.ndarray:
    """The cell with a quarter of its size around it, its outline drawn, CROP_PX wide (BGR)."""
    x0, y0, x1, y1 = detections.mask_extents()[index]
    pad = max(x1 - x0, y1 - y0) // 4 + 1
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(image.width, x1 + pad), min(image.height, y1 + pad)
    crop = np.ascontiguousarray(image.read(y0, y1, x0, x1))
    mask = np.zeros(crop.shape[:2], bool)
    detections.masks[index].shifted(-y0, -x0).paste(mask)
    scale = CROP_PX / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(crop, contours, -1, (60, 20, 220), 2)
    return crop


def _draw_gallery(calls: List[_Call], title: str, path: str) -> None:
    figure = Figure(figsize=(1.9 * len(calls), 2.3))
    axes = figure.subplots(1, len(calls), squeeze=False)
    for number, (axis, call) in enumerate(zip(axes[0], calls), start=1):
        axis.imshow(call.crop[:, :, ::-1])
        axis.set_title(f"{number}: p = {call.prob:.2f}", fontsize=9)
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    temporary = f"{path}.{os.getpid()}.tmp.png"
    figure.savefig(temporary, dpi=100)
    os.replace(temporary, path)
