"""A per-case summary of the cells found in a folder of one patient's frames (or one large image):
``report.md``, ``report.json`` and ``report.html``, with a gallery of the classifier's most and least
confident myeloma calls for a person to check, all at one scale. Images that could not be read and
warnings about an image (a greyscale frame, say) are listed, so that no doubt about a count is lost.

The myeloma fraction is given with two 95% intervals: Wilson's, which takes every cell as an independent
draw, and a bootstrap over images, which keeps each image's cells together (cells of one frame share
its smear, stain and focus, so they vary together; with few images this interval is the wider and the
honest one).
"""
import datetime
import html
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.config import CfgNode
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from scipy.stats import binomtest, bootstrap
from tabulate import tabulate

from ..data.images import Failure
from ..data.regions import ImageRegions
from ..data.statistics import area_diameter
from ..modeling.post_hooks import describe_post_hooks
from ..structures import CellDetections, CellScale
from ..utils.atomic import write_atomic, write_json_atomic

DISCLAIMER = ("This is a research tool, not a diagnosis. Its cell counts and myeloma calls come from "
              "models trained on the SegPC-2021 images; they have not been validated for clinical use and "
              "must not be used to diagnose, stage or treat a patient.")
FRACTION_NOTE = ("The myeloma fraction is of the cells this detector finds: plasma-cell-like cells, the only "
                 "cells SegPC-2021 annotates and so the only ones its models learnt to find. It is not a "
                 "fraction of all nucleated marrow cells, the plasma-cell percentage of a differential count.")
GALLERY_SIZE = 8  # cells in each gallery
CROP_PX = 160  # side of a gallery picture
# A gallery picture shows a square of this many median cell diameters (of the whole case) a side, so that
# every picture has one scale and cell sizes compare across pictures and images.
WINDOW_DIAMETERS = 2.0
SCALE_BARS_UM = (1, 2, 5, 10, 20, 50, 100, 200)  # the longest that fits 40% of a picture is drawn
OUTSIDE_GREY = 210  # what a gallery picture shows beyond the image's edge
BOOTSTRAP_SAMPLES = 2000
SEGPC_IMAGE_FOLDER = "x"  # SegPC-2021 keeps a split's images in <dataset>/<split>/x/


def default_case_name(input_path: str) -> str:
    """The name of the input file or folder; for a SegPC image folder ``<dataset>/<split>/x``, whose name
    says nothing, ``"<dataset>/<split>"`` (e.g. "segpc_mini/train")."""
    path = os.path.abspath(input_path)
    name = os.path.basename(path)
    if name == SEGPC_IMAGE_FOLDER and os.path.isdir(path):
        split = os.path.dirname(path)
        named = [n for n in (os.path.basename(os.path.dirname(split)), os.path.basename(split)) if n]
        return "/".join(named) or name
    return name


@dataclass
class _Picture:
    """The surroundings of a cell, centred on it, kept until the case's cell size (and so the gallery's
    one scale) is known: BGR ``pixels`` and the cell's ``mask`` at ``scale`` picture pixels per image
    pixel."""
    pixels: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    scale: float


@dataclass
class _Call:
    """A cell the classifier called myeloma, with its picture (kept only while it may enter a gallery)."""
    prob: float
    image: str
    index: int
    picture: _Picture


@dataclass
class CaseReport:
    """Collects every image's cells (:meth:`add`), then writes the report (:meth:`write`). With
    ``pixel_size_um`` (the side of an image pixel in micrometres) the galleries carry a scale bar."""
    cell_class: int
    pixel_size_um: Optional[float] = None
    rows: List[Dict[str, Any]] = field(default_factory=list)
    most: List[_Call] = field(default_factory=list)
    least: List[_Call] = field(default_factory=list)
    classified: bool = False
    diameters: List[np.ndarray] = field(default_factory=list, repr=False)

    def add(self, path: str, image: ImageRegions, detections: CellDetections, warnings: Sequence[str] = (),
            scale: Optional[CellScale] = None) -> None:
        """Count one image's cells, found at the cell ``scale`` (listed with how it was found); cut
        pictures of the myeloma calls that may enter the galleries.
        ``warnings`` about the image (e.g. :func:`~detectron2_myeloma.data.colour.colour_warnings`) are
        listed in the report beside its name: they say which counts to doubt."""
        is_cell = detections.classes == self.cell_class
        labels = detections.labels
        row: Dict[str, Any] = {"image": os.path.basename(path), "cells": int(is_cell.sum()),
                               "warnings": list(warnings)}
        if scale is not None:
            row["cell_diameter"] = {"px": round(scale.diameter, 1), "from": scale.source, "how": scale.detail}
        diameters = area_diameter(detections.areas()[is_cell])
        self.diameters.append(diameters)
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
                        call = call or _Call(float(probs[i]), row["image"], int(i),
                                             _surroundings(image, detections, i, float(np.median(diameters))))
                        gallery.append(call)
                        gallery.sort(key=lambda c, sign=sign: sign * c.prob)
                        del gallery[GALLERY_SIZE:]
        self.rows.append(row)

    def window_px(self) -> Optional[float]:
        """Side, in image pixels, of the square every gallery picture shows: WINDOW_DIAMETERS median
        cell diameters of the whole case (None without cells)."""
        diameters = np.concatenate([np.zeros(0), *self.diameters])
        return max(1.0, float(WINDOW_DIAMETERS * np.median(diameters))) if diameters.size else None

    def summary(self, failures: Sequence[Failure] = ()) -> Dict[str, Any]:
        """The numbers of the report (what ``report.json`` holds, less the galleries); ``failures``:
        (path, reason) of the images that could not be read."""
        cells = sum(r["cells"] for r in self.rows)
        result: Dict[str, Any] = {"images": len(self.rows), "images_not_read": len(failures), "cells": cells,
                                  "classified": self.classified}
        if self.classified:
            myeloma = sum(r["myeloma"] for r in self.rows)
            classified = myeloma + sum(r["other"] for r in self.rows)
            result.update(myeloma=myeloma, other=classified - myeloma)
            if classified:
                wilson = binomtest(myeloma, classified).proportion_ci(0.95, method="wilson")
                result["myeloma_fraction"] = myeloma / classified
                result["myeloma_fraction_note"] = FRACTION_NOTE
                result["ci95_wilson"] = [wilson.low, wilson.high]
                result["ci95_bootstrap_images"] = self._bootstrap_interval()
        result["per_image"] = self.rows
        result["not_read"] = [{"image": path, "reason": reason} for path, reason in failures]
        return result

    def _bootstrap_interval(self) -> Optional[List[float]]:
        """95% percentile interval of the pooled fraction, resampling whole images (scipy's bootstrap,
        paired: each image's myeloma and classified counts together); images without classified cells
        weigh nothing in the fraction and are left out. None for fewer than two such images."""
        counts = [(r["myeloma"], r["myeloma"] + r["other"]) for r in self.rows if r["myeloma"] + r["other"]]
        if len(counts) < 2:
            return None
        myeloma, classified = (np.array(column, dtype=np.float64) for column in zip(*counts))
        result = bootstrap((myeloma, classified), _pooled_fraction, paired=True, vectorized=True,
                           n_resamples=BOOTSTRAP_SAMPLES, method="percentile", rng=np.random.default_rng(0))
        return [float(result.confidence_interval.low), float(result.confidence_interval.high)]

    def write(self, folder: str, case: str, model: str, failures: Sequence[Failure] = ()) -> None:
        """``report.md``, ``report.json``, ``report.html`` and the gallery pictures into ``folder``;
        ``failures`` (path, reason) are the images that could not be read, listed so that none vanishes."""
        summary = self.summary(failures)
        window = self.window_px()
        scale_note = _scale_note(window, self.pixel_size_um) if window else ""
        galleries = []
        for name, title, calls in (("gallery_most_confident.png", "Most confident myeloma calls", self.most),
                                   ("gallery_least_confident.png", "Least confident myeloma calls", self.least)):
            if calls:
                _draw_gallery(calls, title, os.path.join(folder, name), window, self.pixel_size_um)
                galleries.append((title, name, calls))
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        numbers = _numbers_table(summary)
        notes = [n for n in (_interval_note(summary), summary.get("myeloma_fraction_note", ""),
                             _estimated_note(self.rows)) if n]
        columns = ["image", "cells", *(["myeloma", "other", "myeloma fraction"] if self.classified else []),
                   "cell diameter"]
        per_image = [[r["image"], r["cells"], *([r["myeloma"], r["other"], _fraction(r)] if self.classified else []),
                      _diameter(r)] for r in self.rows]
        warned = [(r["image"], "; ".join(r["warnings"])) for r in self.rows if r["warnings"]]
        not_read = [(item["image"], item["reason"]) for item in summary["not_read"]]
        sections = [("Warnings", ["image", "warning"], warned), ("Images not read", ["image", "reason"], not_read),
                    ("Per image", columns, per_image)]
        write_json_atomic({"case": case, "date": date, "model": model, "disclaimer": DISCLAIMER, **summary,
                           "gallery_window_px": window,
                           "galleries": {title: [{"image": c.image, "index": c.index, "myeloma_prob": c.prob}
                                                 for c in calls] for title, _, calls in galleries}},
                          os.path.join(folder, "report.json"), indent=1)
        md = [f"# Case report: {case}", f"**{DISCLAIMER}**", f"Model: {model}. Written {date}.",
              tabulate(numbers, tablefmt="github", headers=["", "value"]), *notes]
        for title, headers, rows in sections:
            if rows:
                md += [f"## {title}", tabulate(rows, headers=headers, tablefmt="github")]
        for title, name, calls in galleries:
            md += [f"## {title}", f"![{title}]({name})", scale_note, _gallery_caption(calls)]
        write_atomic(os.path.join(folder, "report.md"), "\n\n".join(p for p in md if p) + "\n")
        body = [f"<h1>Case report: {html.escape(case)}</h1>", f"<p><strong>{html.escape(DISCLAIMER)}</strong></p>",
                f"<p>Model: {html.escape(model)}. Written {date}.</p>", tabulate(numbers, tablefmt="html"),
                *(f"<p>{html.escape(n)}</p>" for n in notes)]
        for title, headers, rows in sections:
            if rows:
                body += [f"<h2>{title}</h2>", tabulate(rows, headers=headers, tablefmt="html")]
        for title, name, calls in galleries:
            body += [f"<h2>{title}</h2>", f'<img src="{name}" alt="{title}" style="max-width:100%">',
                     f"<p>{html.escape(scale_note)}</p>", f"<p>{html.escape(_gallery_caption(calls))}</p>"]
        page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Case report: "
                f"{html.escape(case)}</title><style>body{{font-family:sans-serif;max-width:60em;margin:auto}}"
                "td,th{padding:2px 8px;text-align:right}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
        write_atomic(os.path.join(folder, "report.html"), page)


def _estimated_note(rows: List[Dict[str, Any]]) -> str:
    estimated = sum(r.get("cell_diameter", {}).get("from") == "estimated" for r in rows)
    if not estimated:
        return ""
    return (f"The cell diameter of {estimated} image(s) was estimated from the image itself (the median of the "
            "cells the detector is most confident about; report.json says how): give --cell-diameter PX when "
            "it is known.")


def _diameter(row: Dict[str, Any]) -> str:
    """The cell diameter an image was predicted at, and whence (the details are in report.json)."""
    scale = row.get("cell_diameter")
    return f"{scale['px']:.0f} px ({scale['from']})" if scale else ""


def _pooled_fraction(myeloma: np.ndarray, classified: np.ndarray, axis: int = -1) -> np.ndarray:
    return myeloma.sum(axis=axis) / classified.sum(axis=axis)


def describe_model(cfg: CfgNode) -> str:
    """The models behind a report: the detector's weights and each post-hook, e.g. the cell classifier's."""
    return ", ".join([f"detector {cfg.MODEL.WEIGHTS}", *describe_post_hooks(cfg)])


def _fraction(row: Dict[str, Any]) -> str:
    classified = row["myeloma"] + row["other"]
    return f"{row['myeloma'] / classified:.1%}" if classified else ""


def _numbers_table(summary: Dict[str, Any]) -> List[Tuple[str, str]]:
    read, refused = summary["images"], summary["images_not_read"]
    rows = [("images", f"{read} of {read + refused} read ({refused} could not be read: listed below)" if refused
             else str(read)), ("cells found", str(summary["cells"]))]
    if not read and refused:
        return rows + [("myeloma calls", "not available: no image could be read")]
    if not summary["classified"]:
        return rows + [("myeloma calls", "not available: the cell classifier did not run")]
    rows += [("called myeloma", str(summary["myeloma"])), ("called other", str(summary["other"]))]
    if "myeloma_fraction" in summary:
        low, high = summary["ci95_wilson"]
        rows.append(("myeloma fraction of the detected plasma-cell-like cells, not of all nucleated cells "
                     "(see below)", f"{summary['myeloma_fraction']:.1%}"))
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


def _scale_note(window: float, pixel_size_um: Optional[float]) -> str:
    size = f"{window:.0f} image pixels" + (f" ({window * pixel_size_um:.1f} µm)" if pixel_size_um else "")
    return (f"Every picture shows a square of {size} a side, {WINDOW_DIAMETERS:g} median cell diameters of this "
            "case: one scale for all, so cell sizes compare" + (" (scale bar in each)." if pixel_size_um else "."))


def _surroundings(image: ImageRegions, detections: CellDetections, index: int, diameter: float) -> _Picture:
    """The cell's surroundings, centred on it: twice the side of a gallery picture at this image's median
    cell ``diameter``, so that the case's median (known at the end) may be up to twice as large, at twice
    the gallery's resolution at most (a full-size frame's pictures take little memory). Grey beyond the
    image's edge."""
    x0, y0, x1, y1 = (int(v) for v in detections.mask_extents()[index])
    side = max(2, round(2 * WINDOW_DIAMETERS * diameter))
    top, left = (y0 + y1 - side) // 2, (x0 + x1 - side) // 2
    pixels = np.full((side, side, 3), OUTSIDE_GREY, np.uint8)
    region = image.read(top, top + side, left, left + side)  # clipped to the image
    pixels[max(0, -top):max(0, -top) + region.shape[0], max(0, -left):max(0, -left) + region.shape[1]] = region
    mask = np.zeros((side, side), bool)
    detections.masks[index].shifted(-top, -left).paste(mask)
    scale = min(1.0, 4 * CROP_PX / side)  # 2 * CROP_PX picture pixels for the window at this image's median
    size = (max(1, round(side * scale)),) * 2
    return _Picture(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA),
                    cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5, scale)


def _gallery_picture(picture: _Picture, window: float) -> np.ndarray:
    """The square of ``window`` image pixels around the cell, CROP_PX wide, its outline drawn (BGR)."""
    zoom = CROP_PX / (window * picture.scale)  # gallery pixels per picture pixel
    shift = (CROP_PX - 1) / 2 - zoom * (picture.pixels.shape[0] - 1) / 2  # centre onto centre (pixel indices)
    warp = np.array([[zoom, 0, shift], [0, zoom, shift]])
    crop = cv2.warpAffine(picture.pixels, warp, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(OUTSIDE_GREY,) * 3)
    mask = cv2.warpAffine(picture.mask.astype(np.uint8), warp, (CROP_PX, CROP_PX), flags=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(crop, contours, -1, (60, 20, 220), 2)
    return crop


def _draw_gallery(calls: List[_Call], title: str, path: str, window: float, pixel_size_um: Optional[float]) -> None:
    figure = Figure(figsize=(1.9 * len(calls), 2.3))
    axes = figure.subplots(1, len(calls), squeeze=False)
    bar_um = None
    if pixel_size_um:
        fitting = [um for um in SCALE_BARS_UM if um <= 0.4 * window * pixel_size_um]
        bar_um = fitting[-1] if fitting else None
    for number, (axis, call) in enumerate(zip(axes[0], calls), start=1):
        axis.imshow(_gallery_picture(call.picture, window)[:, :, ::-1])
        axis.set_title(f"{number}: p = {call.prob:.2f}", fontsize=9)
        axis.axis("off")
        if bar_um:
            axis.add_artist(AnchoredSizeBar(axis.transData, bar_um / pixel_size_um * CROP_PX / window,
                                            f"{bar_um:g} µm", "lower right", pad=0.3, color="black",
                                            frameon=False, size_vertical=2, fontproperties={"size": 7}))
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    temporary = f"{path}.{os.getpid()}.tmp.png"
    figure.savefig(temporary, dpi=100)
    os.replace(temporary, path)
