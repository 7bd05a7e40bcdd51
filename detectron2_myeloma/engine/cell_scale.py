"""The cell scale of an image: its median cell diameter in pixels, decided once per image, before the
image is resized, tiled or cropped, and handed to every tile and post-hook of it.

In this order: ``--cell-diameter`` (the user's word), the frame size of a known microscope
(``FRAME_CELL_DIAMETERS``), or an estimate from the image itself. The estimate follows cellpose's
second step (the median diameter of the masks of a first pass) with a search for the first pass's
scale: the detector runs on one window of the image at octave-spaced candidate diameters; the
candidate whose detections are the most confident wins, and the median equivalent diameter of its
detections, re-measured at that diameter until it settles, is the estimate. A window is about 5 x 5
cells at the candidate's scale, placed on the most stained part of the image, so the search costs a
few small passes whatever the image size. Images of one size in one run (one camera's frames) share
the median of all their cells (:meth:`CellScaleFinder.survey`).
"""
import logging
import math
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from ..data.datasets.builtin import FRAME_CELL_DIAMETERS
from ..data.images import header_size
from ..data.regions import ImageRegions, open_regions
from ..data.report import DatasetError
from ..data.statistics import area_diameter
from ..structures import CellDetections, CellScale
from ..utils.errors import InputError

logger = logging.getLogger(__name__)

AUTO = "auto"  # --cell-diameter auto: estimate every image's scale, SegPC frame sizes too
# The smallest cell diameter (px) the model can see: brought to a model's 80 px cells, an 8 px cell is
# upsampled 10x, and below that it is a blur of a few dozen pixels.
MIN_CELL_DIAMETER = 8.0
# Detections at least this confident measure the cells (and decide the candidate scale).
ESTIMATE_MIN_SCORE = 0.5
# A candidate's confidence is its detections' mean score shrunk towards this prior by one pseudo-detection,
# so that one lucky detection at a wrong scale does not outweigh a frame of confident cells.
SCORE_PRIOR = 0.5
# The cells found at the best candidate are measured again on a whole tile at their median diameter,
# until two passes agree within SETTLED (at most MAX_REFINEMENTS passes).
SETTLED = 1.1
MAX_REFINEMENTS = 3
# Cells found at a median diameter this many times off the one predicted at make a warning.
SCALE_WARNING_FACTOR = 1.5
PREVIEW_SIDE = 512  # long side of the preview the window is placed on
# Side (model pixels) of the window each candidate diameter is tried on: about 5 x 5 cells at the right
# scale; re-measurement uses a whole tile (TEST.TILES.SIZE), for more cells.
SEARCH_WINDOW = 384

# (image, cell diameter in px) -> the detector's detections of that image at that scale
Detect = Callable[[np.ndarray, float], CellDetections]


def check_cell_diameter(diameter: float, shape: Tuple[int, int], path: str) -> None:
    """DatasetError (naming the image) unless ``MIN_CELL_DIAMETER <= diameter <=`` the image's short
    side: a smaller cell is too blurred to see once brought to the model's scale, a larger one does not
    fit in the image."""
    short = min(shape)
    if not MIN_CELL_DIAMETER <= diameter <= short:
        size = f"{shape[1]}x{shape[0]} px"
        if short < MIN_CELL_DIAMETER:
            raise DatasetError(path, f"{size}, too small to hold a cell the model can see "
                                     f"(at least {MIN_CELL_DIAMETER:g} px across)")
        raise DatasetError(path, f"{size}: a cell diameter of {diameter:g} px cannot be right: it must lie "
                                 f"between {MIN_CELL_DIAMETER:g} px and the image's short side, {short} px")


def parse_cell_diameter(text: Optional[str]) -> Union[float, str, None]:
    """``--cell-diameter``'s value (None when not given): a number of pixels no image can refuse
    (:func:`check_given_diameter`), or "auto"; InputError otherwise, before the model loads."""
    if text is None or text.strip().lower() == AUTO:
        return text and AUTO
    try:
        diameter = float(text)
    except ValueError:
        raise InputError(f"--cell-diameter {text}: not a number of pixels, nor {AUTO!r}") from None
    check_given_diameter(diameter)
    return diameter


def check_given_diameter(diameter: Union[float, str, None]) -> None:
    """InputError for a ``--cell-diameter`` no image can have (checked before the model loads)."""
    if diameter == AUTO:
        return
    if diameter is not None and not (math.isfinite(diameter) and diameter >= MIN_CELL_DIAMETER):
        raise InputError(f"--cell-diameter {diameter:g}: the median cell diameter must be at least "
                         f"{MIN_CELL_DIAMETER:g} px (the smallest cell the model can see)")


def equivalent_diameters(detections: CellDetections, cell_class: int, min_score: float = ESTIMATE_MIN_SCORE
                         ) -> np.ndarray:
    """Equivalent diameters (:func:`~detectron2_myeloma.data.statistics.area_diameter`, the datasets'
    definition of a cell's diameter) of the cell detections of at least ``min_score``: a (K,) float64
    array in pixels, K the detections kept, in their order."""
    keep = (detections.classes == cell_class) & (detections.scores >= min_score)
    return area_diameter(detections.areas()[keep])


class CellScaleFinder:
    """Decides an image's :class:`CellScale` (see the module docstring).

    Args:
        detect: the detector at a given cell diameter (post-hooks off: the search needs no classifier):
            (HxWx3 uint8 BGR image, diameter in px) -> its detections.
        target: the model's cell diameter in its own pixels (``INPUT.CELL_DIAMETER.TEST``).
        tile: the tile side in model pixels (``TEST.TILES.SIZE``): the search window at each candidate.
        cell_class: the class whose detections are cells.
        given: ``--cell-diameter``: a number, used for every image; None, or "auto" to estimate the
            scale of SegPC-2021's frame sizes too (frames of the same size from another microscope).
    """

    def __init__(self, detect: Detect, target: float, tile: int, cell_class: int,
                 given: Union[float, str, None] = None):
        check_given_diameter(given)
        self.detect = detect
        self.target = target
        self.tile = tile
        self.cell_class = cell_class
        self.given = None if given == AUTO else given
        self.frame_sizes = {} if given == AUTO else FRAME_CELL_DIAMETERS
        self.pooled: Dict[Tuple[int, int], CellScale] = {}  # by image shape, from survey()
        self.own: Dict[str, CellScale] = {}  # by image path, from survey()
        self.failed: Dict[str, InputError] = {}  # by image path: why survey() found no scale

    def __call__(self, regions: ImageRegions) -> Optional[CellScale]:
        """The image's scale; None for a model that resizes by its short edge (``target`` 0) when
        neither the user nor the frame size gives one."""
        shape = tuple(regions.shape)
        if self.given is not None:
            check_cell_diameter(self.given, shape, regions.path)
            return CellScale(self.given, "given", "--cell-diameter")
        if shape in self.frame_sizes:
            return CellScale(self.frame_sizes[shape], "frame size",
                             f"{shape[1]}x{shape[0]} px, a SegPC-2021 frame size")
        if self.target <= 0:
            return None
        pooled, own = self.pooled.get(shape), self.own.get(regions.path)
        if pooled is not None and (own is None or _ratio(own.diameter, pooled.diameter) < SCALE_WARNING_FACTOR):
            return pooled
        if own is not None:
            return CellScale(own.diameter, own.source, own.detail + (
                f"; {_ratio(own.diameter, pooled.diameter):.1f}x off the {pooled.diameter:.0f} px of the "
                "other images of its size, so measured alone" if pooled is not None else ""))
        if regions.path in self.failed:  # searched once already, in vain
            raise self.failed[regions.path]
        return self.estimate(regions)

    def survey(self, paths: Sequence[str]) -> None:
        """Measures beforehand every image whose scale is to be estimated, so that images of one size
        (frames of one camera) share one scale: the median of all their cells, a steadier number than
        one frame's few cells, and the way the model was trained (one scale per microscope). An image
        whose own estimate is SCALE_WARNING_FACTOR times off its group's keeps its own. Unreadable
        images are left to the prediction pass, which reports them, and so are images without cells
        (their reason kept, so that they are not searched again). Images whose header gives a known
        frame size are not decoded here."""
        if self.given is not None or self.target <= 0:
            return
        measured: Dict[Tuple[int, int], List[Tuple[np.ndarray, str]]] = defaultdict(list)
        for path in tqdm(list(paths), desc="cell size", unit="image", leave=False):
            if header_size(path) in self.frame_sizes:
                continue
            try:
                with open_regions(path) as regions:
                    shape = tuple(regions.shape)
                    if shape in self.frame_sizes:
                        continue
                    sizes, detail = self.measure(regions)
            except InputError as err:
                self.failed[str(path)] = err
                continue
            self.own[str(path)] = CellScale(float(np.median(sizes)), "estimated", detail)
            measured[shape].append((sizes, str(path)))
        for (height, width), parts in measured.items():
            typical = float(np.median([self.own[path].diameter for _, path in parts]))
            parts = [(sizes, path) for sizes, path in parts
                     if _ratio(self.own[path].diameter, typical) < SCALE_WARNING_FACTOR]
            if len(parts) > 1:
                sizes = np.concatenate([p[0] for p in parts])
                self.pooled[(height, width)] = CellScale(
                    float(np.median(sizes)), "estimated",
                    f"median of {len(sizes)} cells over the {len(parts)} images of {width}x{height} px")

    def candidates(self, shape: Tuple[int, int]) -> List[float]:
        """Octave-spaced diameters from MIN_CELL_DIAMETER to the image's short side."""
        count = int(math.floor(math.log2(min(shape) / MIN_CELL_DIAMETER))) + 1
        return [MIN_CELL_DIAMETER * 2 ** k for k in range(max(count, 0))]

    def estimate(self, regions: ImageRegions) -> CellScale:
        """The median cell diameter measured from the image alone (InputError when no scale shows a
        cell)."""
        sizes, detail = self.measure(regions)
        return CellScale(float(np.median(sizes)), "estimated", detail)

    def measure(self, regions: ImageRegions) -> Tuple[np.ndarray, str]:
        """The equivalent diameters of the confident cells found at the image's settled scale ((K,) float64,
        pixels, clipped to MIN_CELL_DIAMETER..the short side), and how they were found; InputError when no
        scale shows a cell."""
        shape = regions.shape
        check_cell_diameter(MIN_CELL_DIAMETER, shape, regions.path)
        stain = _stain_map(regions)
        candidates = self.candidates(shape)
        trials = []
        for diameter in candidates:
            found = self._measure(regions, stain, diameter, SEARCH_WINDOW)
            trials.append((_confidence(found[1]), diameter, found))
        confidence, diameter, (sizes, _) = max(trials, key=lambda t: (t[0], -t[1]))
        if not len(sizes):
            raise DatasetError(regions.path, f"no cell found at any scale from {candidates[0]:g} to "
                                             f"{candidates[-1]:g} px: give the median cell diameter, "
                                             "--cell-diameter PX (the image may hold no cells, or unstained ones)")
        at = diameter
        for _ in range(MAX_REFINEMENTS):  # at least once: on a whole tile, at the measured scale
            measured = _clip(float(np.median(sizes)), shape)
            if at != diameter and _ratio(measured, at) <= SETTLED:
                break
            remeasured, _ = self._measure(regions, stain, measured, self.tile)
            if not len(remeasured):
                break
            sizes, at = remeasured, measured
        detail = (f"median of {len(sizes)} cells detected at {at:.0f} px; searched {candidates[0]:g}-"
                  f"{candidates[-1]:g} px, most confident at {diameter:g} px (mean score {confidence:.2f})")
        return np.clip(sizes, MIN_CELL_DIAMETER, min(shape)), detail

    def _measure(self, regions: ImageRegions, stain: np.ndarray, diameter: float, window: int
                 ) -> Tuple[np.ndarray, np.ndarray]:
        """(equivalent diameters, scores) of the confident cells found at ``diameter`` in a window of
        ``window`` model pixels on the most stained part of the image."""
        side = min(math.ceil(window * diameter / self.target), max(regions.shape))
        y0, x0 = _window(stain, regions.shape, side)
        y1, x1 = min(y0 + side, regions.height), min(x0 + side, regions.width)
        found = self.detect(regions.read(y0, y1, x0, x1), diameter)
        # a cell cut by the window's edge (where the image goes on) would measure small
        extents = found.mask_extents()
        whole = ((extents[:, 0] > 0) | (x0 == 0)) & ((extents[:, 1] > 0) | (y0 == 0)) & \
            ((extents[:, 2] < x1 - x0) | (x1 == regions.width)) & ((extents[:, 3] < y1 - y0) | (y1 == regions.height))
        found = found.subset(np.flatnonzero(whole))
        keep = (found.classes == self.cell_class) & (found.scores >= ESTIMATE_MIN_SCORE)
        return equivalent_diameters(found, self.cell_class), found.scores[keep]


def _ratio(a: float, b: float) -> float:
    return max(a, b) / min(a, b)


def _clip(diameter: float, shape: Tuple[int, int]) -> float:
    return min(max(diameter, MIN_CELL_DIAMETER), float(min(shape)))


def _confidence(scores: np.ndarray) -> float:
    return float((scores.sum() + SCORE_PRIOR) / (len(scores) + 1))


def _stain_map(regions: ImageRegions) -> np.ndarray:
    """Colourfulness (max - min channel) of a preview of the image: stained cells are where it is high."""
    scale = min(1.0, PREVIEW_SIDE / max(regions.shape))
    preview = regions.preview(scale).astype(np.int16)
    return (preview.max(axis=2) - preview.min(axis=2)).astype(np.float32)


def _window(stain: np.ndarray, shape: Tuple[int, int], side: int) -> Tuple[int, int]:
    """Top-left corner (image pixels) of the ``side``-pixel square window holding the most stain."""
    height, width = shape
    if side >= height and side >= width:
        return 0, 0
    scale = stain.shape[0] / height
    kernel = max(1, round(side * scale))
    density = cv2.blur(stain, (kernel, kernel), borderType=cv2.BORDER_CONSTANT)
    cy, cx = np.unravel_index(int(np.argmax(density)), density.shape)
    y0 = int(round(cy / scale - side / 2))
    x0 = int(round(cx / scale - side / 2))
    return min(max(y0, 0), max(height - side, 0)), min(max(x0, 0), max(width - side, 0))


def scale_warning(scale: CellScale, detections: CellDetections, cell_class: int) -> Optional[str]:
    """A warning when the cells found disagree with the scale they were found at (a median diameter
    SCALE_WARNING_FACTOR times off, over at least 3 confident cells): the counts are then probably
    wrong, e.g. a frame of a known size from another microscope."""
    sizes = equivalent_diameters(detections, cell_class)
    if len(sizes) < 3:
        return None
    median = float(np.median(sizes))
    if _ratio(median, scale.diameter) < SCALE_WARNING_FACTOR:
        return None
    return (f"the cells found have a median diameter of {median:.0f} px, but the image was predicted for "
            f"{scale.diameter:.0f} px cells ({scale.source}): the scale is probably wrong and so are the "
            "counts; give the median cell diameter with --cell-diameter PX")


def image_scale_warnings(path: str, scale: Optional[CellScale], detections: CellDetections, cell_class: int
                         ) -> List[str]:
    """The image's warnings about its cell scale (for summary.csv and the case report), logged with
    the file name: the cells found disagree with the scale they were found at (:func:`scale_warning`)."""
    mismatch = scale_warning(scale, detections, cell_class) if scale is not None else None
    if mismatch is None:
        return []
    logger.warning("%s: %s", path, mismatch)
    return [mismatch]
