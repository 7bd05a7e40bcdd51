"""Sliced inference: an image larger than a camera frame predicted tile by tile.

Tiles are squares of ``TEST.TILES.SIZE`` pixels at the model's scale, all the same size, overlapping by
``TEST.TILES.OVERLAP`` cell diameters. The overlaps are split down their middle, so every image pixel
belongs to the centre part of exactly one tile; a detection is kept from the tile whose centre part holds
its box centre, and only if it does not touch an edge that tile shares with a neighbour (a cell cut by
the tile edge is seen whole by that neighbour). With an overlap of more than a cell, each cell is found
once, from a tile that sees all of it. Memory follows the tile: one tile's pixels at a time, and every
mask as a crop of its box, from the model on (:class:`~detectron2_myeloma.structures.CellDetections`).
"""
import logging
import math
import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from detectron2.config import CfgNode
from tqdm import tqdm

from ..data.images import Failure, iter_images
from ..data.regions import ImageRegions, open_regions
from ..data.report import DatasetError
from ..structures import CellDetections, CellScale
from ..utils.device import batches, images_per_batch
from ..utils.errors import InputError
from ..utils.memory import release_free_memory
from ..utils.read_ahead import read_ahead
from .predictor import OriginalImagePredictor, build_scale_finder

logger = logging.getLogger(__name__)

WHOLE_IMAGE_WARNING_PIXELS = 25_000_000  # a shortest-edge model warns on images this large: see tile_size
# A detection whose box comes this close to a shared tile edge (in cell diameters) counts as cut by it.
EDGE_MARGIN = 0.02


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> List[int]:
    """Start offsets of equal tiles covering ``length`` pixels with at least ``overlap`` pixels shared
    by neighbours, spread evenly, each a multiple of ``align`` but the last, which ends at the edge."""
    if length <= tile:
        return [0]
    step = tile - overlap - (align - 1)  # room for rounding each start down to the alignment
    if step <= 0:
        raise ValueError(f"tiles of {tile} px cannot overlap by {overlap} px at an alignment of {align} px")
    count = math.ceil((length - tile) / step) + 1
    starts = [int(i * (length - tile) / (count - 1)) // align * align for i in range(count - 1)]
    return starts + [length - tile]


def centre_bounds(starts: List[int], tile: int, length: int) -> List[Tuple[float, float]]:
    """The part of the axis each tile owns: its overlaps with its neighbours split down the middle."""
    cuts = [(starts[i] + tile + starts[i + 1]) / 2 for i in range(len(starts) - 1)]
    return list(zip([-math.inf, *cuts], [*cuts, math.inf]))


class TiledPredictor:
    """An :class:`OriginalImagePredictor` run over the tiles of an image (see the module docstring) at
    the image's cell scale, decided once for the whole image (:meth:`cell_scale`) and handed to every
    tile; an image that fits in one tile is predicted whole, as the predictor alone would."""

    def __init__(self, predictor: OriginalImagePredictor, cfg: CfgNode, cell_class: int,
                 cell_diameter: Union[float, str, None] = None):
        self.predictor = predictor
        self.size = cfg.TEST.TILES.SIZE
        self.overlap = cfg.TEST.TILES.OVERLAP
        self.max_tiles = cfg.TEST.TILES.MAX_COUNT
        self.target = cfg.INPUT.CELL_DIAMETER.TEST
        self.min_size = cfg.INPUT.MIN_SIZE_TEST
        self.fragment_max_inside = cfg.TEST.FRAGMENT_MAX_INSIDE
        self.per_batch = images_per_batch(cfg.TEST.IMS_PER_BATCH, cfg.MODEL.DEVICE)
        if self.size <= 0 or self.overlap <= 0 or self.max_tiles <= 0:
            raise ValueError(f"TEST.TILES.SIZE, OVERLAP and MAX_COUNT must be positive, got {self.size}, "
                             f"{self.overlap} and {self.max_tiles}")
        self.cell_scale = build_scale_finder(predictor, cfg, cell_class, cell_diameter)

    def tile_size(self, diameter: Optional[float]) -> Optional[int]:
        """Tile side in image pixels: TEST.TILES.SIZE at the model's scale. None where there is no one
        scale: the cell diameter is not known, or the model resizes every image to its own shortest
        edge (INPUT.MIN_SIZE_TEST), so that a tile would be seen at another scale than a frame."""
        if self.target <= 0 or diameter is None:
            return None
        return math.ceil(self.size * diameter / self.target)

    def alignment(self, diameter: float) -> int:
        """Tile starts are multiples of the backbone's coarsest stride, in image pixels (rounded), so
        that the tiles share one feature grid: a cell in an overlap is seen on the same grid by both
        tiles, and a tile sees an image's part as the whole image, when predicted whole, saw it."""
        backbone = getattr(getattr(self.predictor, "model", None), "backbone", None)
        divisibility = getattr(backbone, "size_divisibility", 0) or 1
        return max(1, round(divisibility * diameter / self.target))

    def grid(self, path: str, shape: Tuple[int, int], diameter: Optional[float]
             ) -> Optional[Tuple[int, List[int], List[int]]]:
        """``(tile side, row starts, column starts)`` of an image of ``shape`` (H, W) at ``path`` whose
        cells are ``diameter`` pixels, or None where it is predicted whole: it fits in one tile, or
        there is no one scale (tile_size). InputError where the overlap would not fit in a tile, or
        where the image would take more than TEST.TILES.MAX_COUNT tiles."""
        tile = self.tile_size(diameter)
        if tile is None or max(shape) <= tile:
            return None
        overlap = math.ceil(self.overlap * diameter)
        if overlap >= tile:
            raise InputError(f"{path}: tiles of {tile} px cannot overlap by {overlap} px "
                             f"({self.overlap} cell diameters of {diameter:g} px): raise TEST.TILES.SIZE")
        align = self.alignment(diameter)
        rows, cols = tile_starts(shape[0], tile, overlap, align), tile_starts(shape[1], tile, overlap, align)
        if len(rows) * len(cols) > self.max_tiles:
            raise InputError(f"{path}: cells of {diameter:g} px would take {len(rows) * len(cols):,} tiles of "
                             f"{tile} px, more than TEST.TILES.MAX_COUNT ({self.max_tiles:,}): check the "
                             "cell diameter, or raise TEST.TILES.MAX_COUNT for an image this large")
        return tile, rows, cols

    def __call__(self, regions: ImageRegions, scale: Optional[CellScale] = None) -> CellDetections:
        """The detections of the image of ``regions`` whose cells are ``scale`` (by default decided
        here, by :attr:`cell_scale`)."""
        return self.predict_all([(regions, scale if scale is not None else self.cell_scale(regions))])[0]

    def predict_all(self, images: Sequence[Tuple[ImageRegions, Optional[CellScale]]]) -> List[CellDetections]:
        """The detections of each ``(regions, cell scale)`` of ``images``, in order. Images predicted whole
        go through the model :attr:`per_batch` at a time, those of one size and scale together (a batch
        never pads one image to another's size); a large image's tiles, all of one size, too. Each image's
        grid is checked before anything is predicted."""
        regions = [image for image, _ in images]
        diameters = [scale.diameter if scale is not None else None for _, scale in images]
        grids = [self.grid(image.path, image.shape, diameter) for image, diameter in zip(regions, diameters)]
        found: List[Optional[CellDetections]] = [None] * len(images)
        for index, grid in enumerate(grids):
            if grid is not None:
                found[index] = self._predict_tiles(regions[index], diameters[index], *grid)
        whole = [index for index, grid in enumerate(grids) if grid is None]
        for batch in batches(whole, self.per_batch, key=lambda i: (tuple(regions[i].shape), diameters[i])):
            for image in (regions[i] for i in batch):
                if self.target <= 0 and image.height * image.width > WHOLE_IMAGE_WARNING_PIXELS:
                    logger.warning("%s: %dx%d px predicted whole, resized to a %d px short edge; a model with "
                                   "INPUT.CELL_DIAMETER.TEST would predict it tile by tile at its cells' scale",
                                   image.path, image.width, image.height, self.min_size)
            parts = self._predict([regions[i].read(0, regions[i].height, 0, regions[i].width) for i in batch],
                                  diameters[batch[0]])
            for i, part in zip(batch, parts):
                found[i] = part
        if self.fragment_max_inside > 0:
            found = [part.without_fragments(self.fragment_max_inside) for part in found]
        return found

    def _predict_tiles(self, regions: ImageRegions, diameter: float, tile: int, rows: List[int],
                       cols: List[int]) -> CellDetections:
        margin = EDGE_MARGIN * diameter
        row_bounds, col_bounds = centre_bounds(rows, tile, regions.height), centre_bounds(cols, tile, regions.width)
        tiles = [(y0, x0, (*row, *col)) for y0, row in zip(rows, row_bounds) for x0, col in zip(cols, col_bounds)]
        kept: List[CellDetections] = []
        with tqdm(total=len(tiles), desc=os.path.basename(regions.path), unit="tile", leave=False) as progress:
            for batch in batches(tiles, self.per_batch):
                parts = self._predict([regions.read(y0, y0 + tile, x0, x0 + tile) for y0, x0, _ in batch], diameter)
                for (y0, x0, (top, bottom, left, right)), found in zip(batch, parts):
                    found = found.shifted(y0, x0, regions.shape)
                    boxes = found.boxes
                    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
                    keep = (cx >= left) & (cx < right) & (cy >= top) & (cy < bottom)
                    if x0 > 0:
                        keep &= boxes[:, 0] > x0 + margin
                    if x0 + tile < regions.width:
                        keep &= boxes[:, 2] < x0 + tile - margin
                    if y0 > 0:
                        keep &= boxes[:, 1] > y0 + margin
                    if y0 + tile < regions.height:
                        keep &= boxes[:, 3] < y0 + tile - margin
                    kept.append(found.subset(np.flatnonzero(keep)))
                del parts, found, boxes
                release_free_memory()  # else the heap creeps up tile after tile (utils/memory.py)
                progress.update(len(batch))
        merged = CellDetections.cat(kept, regions.shape)
        return merged.subset(np.argsort(-merged.scores, kind="stable"))

    def _predict(self, images: List[np.ndarray], diameter: Optional[float]) -> List[CellDetections]:
        """Images or tiles of one size, in one forward: their detections, each mask pasted into its own
        box only."""
        outputs = self.predictor.predict_batch(images, [diameter] * len(images), mask_crops=True)
        return [CellDetections.from_instances(output["instances"].to("cpu")) for output in outputs]


def predict_cells(predictor: TiledPredictor, paths: Iterable[str], failures: List[Failure]
                  ) -> Iterator[Tuple[str, ImageRegions, CellDetections, Optional[CellScale]]]:
    """``(path, the image's regions, its detections, its cell scale)`` for every readable image, with a
    progress bar over images (and one over the tiles of each large image); unreadable images, and those
    the model cannot take (a cell scale that cannot be right or found), are appended to ``failures``. The
    next image is opened (a camera frame: decoded) in the background while this one is predicted; images
    go through the model ``predictor.per_batch`` at a time (:meth:`TiledPredictor.predict_all`), and each
    one's regions are closed when the caller asks for the next. Scales to estimate are measured first,
    over all images (:meth:`~.cell_scale.CellScaleFinder.survey`)."""
    paths = list(paths)
    predictor.cell_scale.survey(paths)
    pending: List[Tuple[str, ImageRegions, Optional[CellScale]]] = []
    for path, regions in read_ahead(iter_images(paths, failures, read=open_regions)):
        try:
            scale = predictor.cell_scale(regions)
            predictor.grid(regions.path, regions.shape, scale.diameter if scale is not None else None)
        except (InputError, DatasetError) as err:
            _failed(path, regions, err, failures)
            continue
        if scale is not None:
            logger.info("%s: cells of %s", path, scale.describe())
        pending.append((path, regions, scale))
        if len(pending) == predictor.per_batch:
            yield from _predicted(predictor, pending, failures)
            pending = []
    yield from _predicted(predictor, pending, failures)


def _predicted(predictor: TiledPredictor, pending: List[Tuple[str, ImageRegions, Optional[CellScale]]],
               failures: List[Failure]) -> Iterator[Tuple[str, ImageRegions, CellDetections, Optional[CellScale]]]:
    """``predict_cells``' results for a batch of opened images; an image that fails is reported alone."""
    try:
        found = predictor.predict_all([(regions, scale) for _, regions, scale in pending])
    except (InputError, DatasetError) as err:
        if len(pending) == 1:
            _failed(pending[0][0], pending[0][1], err, failures)
            return
        for one in pending:  # which one: each alone
            yield from _predicted(predictor, [one], failures)
        return
    for (path, regions, scale), detections in zip(pending, found):
        with regions:
            yield path, regions, detections, scale


def _failed(path: str, regions: ImageRegions, err: Exception, failures: List[Failure]) -> None:
    regions.close()
    logger.warning("%s", err)
    failures.append((str(path), getattr(err, "problem", str(err))))
