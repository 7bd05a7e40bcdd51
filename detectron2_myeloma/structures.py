"""Detections of one image with each mask kept as the crop of its own bounding box.

Detectron2's ``Instances`` hold every mask at the image's full size: fine for a camera frame, but a
20,000 x 20,000 px slide region would need 400 MB per cell. :class:`CellDetections` holds what the
outputs need (boxes, classes, scores, the cell classifier's answer) and each mask as a tight crop with
its offset, so its memory follows the cells, not the image; the tiled predictor builds one from its
tiles and every writer reads it. :class:`CellScale` is the image's cell size that the detections were
made at, decided once per image (``engine/cell_scale.py``) and reported by the writers.
"""
from dataclasses import dataclass, field
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import pycocotools.mask as mask_util
import shapely
import torch
from detectron2.structures import Boxes, Instances

# Instances fields of a model that predicts each cell's nucleus (MODEL.ROI_MASK_HEAD.NUCLEUS): full-size
# masks like pred_masks (before pasting: (1, M, M) probabilities), or MaskCrops like pred_mask_crops.
NUCLEUS_MASKS = "pred_nucleus_masks"
NUCLEUS_CROPS = "pred_nucleus_crops"
MIN_NUCLEUS_OVERLAP = 0.5  # a nucleus detection belongs to a cell when at least this fraction of it lies inside


class MaskCrop(NamedTuple):
    """A binary mask as its tight bounding box: ``mask`` (h x w bool) placed at row ``y``, column ``x``."""
    y: int
    x: int
    mask: np.ndarray

    @classmethod
    def from_full(cls, full: np.ndarray) -> "MaskCrop":
        """The tight crop of a full-size HxW mask (any dtype, nonzero pixels set) as an h x w bool crop (an
        empty mask becomes a 0 x 0 crop at the origin)."""
        rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
        if rows.size == 0:
            return cls(0, 0, np.zeros((0, 0), dtype=bool))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(int(y0), int(x0), np.ascontiguousarray(full[y0:y1, x0:x1], dtype=bool))

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    def shifted(self, dy: int, dx: int) -> "MaskCrop":
        return MaskCrop(self.y + dy, self.x + dx, self.mask)

    def overlap(self, other: "MaskCrop") -> int:
        """Number of pixels set in both masks."""
        y0, x0 = max(self.y, other.y), max(self.x, other.x)
        y1 = min(self.y + self.mask.shape[0], other.y + other.mask.shape[0])
        x1 = min(self.x + self.mask.shape[1], other.x + other.mask.shape[1])
        if y1 <= y0 or x1 <= x0:
            return 0
        a = self.mask[y0 - self.y:y1 - self.y, x0 - self.x:x1 - self.x]
        b = other.mask[y0 - other.y:y1 - other.y, x0 - other.x:x1 - other.x]
        return int(np.count_nonzero(a & b))

    def clipped_to(self, other: "MaskCrop") -> "MaskCrop":
        """This mask's pixels that are also in ``other``, as a tight crop."""
        window = np.zeros(other.mask.shape, dtype=bool)
        self.shifted(-other.y, -other.x).paste(window)
        return MaskCrop.from_full(window & other.mask).shifted(other.y, other.x)

    def paste(self, canvas: np.ndarray) -> None:
        """Sets the mask's pixels in ``canvas`` (a full-size HxW bool array, changed in place), clipped to
        it."""
        h, w = canvas.shape[:2]
        y0, x0 = max(self.y, 0), max(self.x, 0)
        y1, x1 = min(self.y + self.mask.shape[0], h), min(self.x + self.mask.shape[1], w)
        if y1 > y0 and x1 > x0:
            canvas[y0:y1, x0:x1] |= self.mask[y0 - self.y:y1 - self.y, x0 - self.x:x1 - self.x]

    def scaled(self, scale: float) -> "MaskCrop":
        """The mask resized by ``scale`` (area-averaged, half-covered pixels set), for previews."""
        if self.mask.size == 0:
            return self
        y0, x0 = round_half_up(self.y * scale), round_half_up(self.x * scale)
        y1 = max(y0 + 1, round_half_up((self.y + self.mask.shape[0]) * scale))
        x1 = max(x0 + 1, round_half_up((self.x + self.mask.shape[1]) * scale))
        small = cv2.resize(self.mask.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        return MaskCrop(y0, x0, small >= 0.5)

    def rle(self, image_size: Tuple[int, int]) -> dict:
        """COCO compressed RLE of the mask in an image of ``image_size`` (H, W), computed from the crop
        (column-major runs offset into the image), never from a full-size array."""
        height, width = image_size
        if self.mask.size == 0:
            return mask_util.frPyObjects({"counts": [height * width], "size": [height, width]},
                                         height, width)
        columns = np.pad(self.mask.T, ((0, 0), (1, 1))).astype(np.int8)  # one row per image column
        col, row = np.nonzero(np.diff(columns, axis=1))  # run starts and ends alternate per column
        edges = (self.x + col).astype(np.int64) * height + self.y + row
        starts, ends = edges[0::2], edges[1::2]
        keep = np.ones(len(starts), dtype=bool)  # a run down to the bottom row goes on in the next column
        joined = starts[1:] == ends[:-1]
        keep[1:] &= ~joined
        ends = np.append(ends[:-1][~joined], ends[-1])
        starts = starts[keep]
        counts = np.empty(2 * len(starts) + 1, dtype=np.int64)
        counts[0:-1:2] = starts - np.concatenate([[0], ends[:-1]])
        counts[1::2] = ends - starts
        counts[-1] = height * width - ends[-1]
        if counts[-1] == 0:  # as pycocotools encodes: no empty last run
            counts = counts[:-1]
        return mask_util.frPyObjects({"counts": counts.tolist(), "size": [height, width]}, height, width)


class MaskCrops:
    """The masks of ``Instances`` as :class:`MaskCrop` s (the ``pred_mask_crops`` field the model writes
    for inputs with ``"mask_crops"``): indexable as ``Instances`` index their fields (slice, boolean or
    integer tensor), so that post-hooks may filter the detections."""

    def __init__(self, crops: Sequence[MaskCrop]):
        self.crops = list(crops)

    def __len__(self) -> int:
        return len(self.crops)

    def __iter__(self) -> Iterator[MaskCrop]:
        return iter(self.crops)

    def __getitem__(self, item: Union[int, slice, torch.Tensor, np.ndarray, Sequence[int]]) -> "MaskCrops":
        if isinstance(item, slice):
            return MaskCrops(self.crops[item])
        index = torch.as_tensor(item)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        return MaskCrops([self.crops[i] for i in index.reshape(-1).tolist()])


@dataclass
class CellDetections:
    """The N detections of one image of ``image_size`` (H, W): XYXY ``boxes`` ((N, 4) float32, image
    pixels), ``classes`` ((N,) int64), ``scores`` ((N,) float32), ``masks`` (one :class:`MaskCrop` each)
    and, where the cell classifier ran, its ``labels`` ((N,) int64: 1 myeloma, 0 other, -1 not
    classified) and myeloma probabilities ``probs`` ((N,) float32, NaN where not classified). Where the
    model predicts each cell's nucleus, ``nuclei`` holds one :class:`MaskCrop` per detection (inside its
    mask; empty where none was found); None for a model without. The dtypes are those
    :meth:`from_instances` gives; the constructor does not cast."""
    image_size: Tuple[int, int]
    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    masks: List[MaskCrop] = field(default_factory=list)
    labels: Optional[np.ndarray] = None
    probs: Optional[np.ndarray] = None
    nuclei: Optional[List[MaskCrop]] = None

    def __len__(self) -> int:
        return len(self.classes)

    @classmethod
    def from_instances(cls, instances: Instances) -> "CellDetections":
        """From the ``Instances`` of N detections in an HxW image: ``pred_classes`` (N,) and ``scores``
        (N,) (cast to int64 and float32), ``pred_boxes`` (Boxes, (N, 4) XYXY image pixels, cast to
        float32), ``pred_mask_crops`` or full-size ``pred_masks`` ((N, H, W) bool), the nuclei likewise
        (``pred_nucleus_crops`` or ``pred_nucleus_masks``) where the model predicts them and, where the
        classifier ran, ``pred_cell_labels`` ((N,) int64) / ``pred_cell_probs`` ((N,) myeloma
        probabilities or (N, 2) class probabilities); tensors or arrays, any device. Without
        ``pred_boxes``, the boxes are the masks' extents."""
        fields = {name: torch.as_tensor(value).cpu().numpy() for name, value in instances.get_fields().items()
                  if name not in ("pred_boxes", "pred_mask_crops", NUCLEUS_CROPS)}
        masks = (list(instances.pred_mask_crops) if instances.has("pred_mask_crops")
                 else [MaskCrop.from_full(m) for m in fields.get("pred_masks", ())])
        nuclei = (list(instances.get(NUCLEUS_CROPS)) if instances.has(NUCLEUS_CROPS)
                  else [MaskCrop.from_full(m) for m in fields[NUCLEUS_MASKS]] if NUCLEUS_MASKS in fields else None)
        probs = fields.get("pred_cell_probs")
        if probs is not None and probs.ndim == 2:
            probs = probs[:, 1]
        boxes = (instances.pred_boxes.tensor.cpu().numpy() if instances.has("pred_boxes")
                 else _extents(masks))
        return cls(tuple(instances.image_size), boxes.astype(np.float32), fields["pred_classes"].astype(np.int64),
                   fields["scores"].astype(np.float32), masks, fields.get("pred_cell_labels"), probs, nuclei)

    def to_instances(self) -> Instances:
        """As the model's ``Instances``, with full-size ``pred_masks`` (and ``pred_nucleus_masks``), for
        Detectron2's evaluators, which take whole-image masks: camera frames, not slide regions. CPU
        tensors: ``pred_boxes`` (N, 4) float32, ``scores`` (N,) float32, ``pred_classes`` (N,) int64,
        the masks (N, H, W) bool, the classifier's fields as held."""
        instances = Instances(self.image_size)
        instances.pred_boxes = Boxes(torch.from_numpy(self.boxes))
        instances.scores = torch.from_numpy(self.scores)
        instances.pred_classes = torch.from_numpy(self.classes)
        instances.pred_masks = torch.from_numpy(_pasted(self.masks, self.image_size))
        if self.nuclei is not None:
            instances.set(NUCLEUS_MASKS, torch.from_numpy(_pasted(self.nuclei, self.image_size)))
        if self.labels is not None:
            instances.pred_cell_labels = torch.from_numpy(self.labels)
        if self.probs is not None:
            instances.pred_cell_probs = torch.from_numpy(self.probs)
        return instances

    @classmethod
    def empty(cls, image_size: Tuple[int, int]) -> "CellDetections":
        return cls(tuple(image_size), np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))

    def subset(self, indices: Sequence[int]) -> "CellDetections":
        index = np.asarray(indices, dtype=np.int64)
        return CellDetections(self.image_size, self.boxes[index], self.classes[index], self.scores[index],
                              [self.masks[i] for i in index],
                              None if self.labels is None else self.labels[index],
                              None if self.probs is None else self.probs[index],
                              None if self.nuclei is None else [self.nuclei[i] for i in index])

    def shifted(self, dy: int, dx: int, image_size: Tuple[int, int]) -> "CellDetections":
        """The detections moved by (dy, dx) pixels into an image of ``image_size`` (a tile's into its
        image's coordinates)."""
        return CellDetections(tuple(image_size), self.boxes + np.array([dx, dy, dx, dy], np.float32),
                              self.classes, self.scores, [m.shifted(dy, dx) for m in self.masks],
                              self.labels, self.probs,
                              None if self.nuclei is None else [m.shifted(dy, dx) for m in self.nuclei])

    @staticmethod
    def cat(parts: Sequence["CellDetections"], image_size: Tuple[int, int]) -> "CellDetections":
        """All detections of ``parts`` (in one image of ``image_size``), in order."""
        if not parts:
            return CellDetections.empty(image_size)
        classified = all(p.labels is not None for p in parts)
        with_nuclei = all(p.nuclei is not None for p in parts)
        return CellDetections(tuple(image_size), np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
                              np.concatenate([p.classes for p in parts]),
                              np.concatenate([p.scores for p in parts]),
                              [m for p in parts for m in p.masks],
                              np.concatenate([p.labels for p in parts]) if classified else None,
                              np.concatenate([p.probs for p in parts])
                              if classified and all(p.probs is not None for p in parts) else None,
                              [m for p in parts for m in p.nuclei] if with_nuclei else None)

    def areas(self) -> np.ndarray:
        """(N,) int64 mask area of each detection, in pixels."""
        return np.array([m.area for m in self.masks], dtype=np.int64)

    def mask_extents(self) -> np.ndarray:
        """(N, 4) int64 XYXY pixel extent of each mask crop (its tight box, unlike the predicted
        ``boxes``)."""
        return _extents(self.masks)

    def without_fragments(self, max_inside: float) -> "CellDetections":
        """The detections less the fragments: a detection with at least ``max_inside`` of its own mask
        area inside one larger, higher-scored detection of the same class is a partial second mask of
        that cell, not a cell of its own. The score matters: on real frames the larger of such a pair,
        when scored lower, is mostly a merge of two cells whose own, well-outlined detections lie inside
        it, and those must stay. ``max_inside`` <= 0 keeps everything (the threshold's choice:
        docs/RESULTS.md, "Fragments").

        Candidate pairs come from an R-tree of the mask extents (shapely's STRtree), so a slide region's
        thousands of cells cost about N log N; masks are compared only where the overlap of the two
        extents could reach ``max_inside`` of the smaller mask."""
        if max_inside <= 0 or len(self) < 2:
            return self
        areas = self.areas()
        extents = self.mask_extents()
        boxes = shapely.box(*extents.T)
        small, large = shapely.STRtree(boxes).query(boxes, predicate="intersects")  # all pairs, both ways
        width = np.minimum(extents[small, 2], extents[large, 2]) - np.maximum(extents[small, 0], extents[large, 0])
        height = np.minimum(extents[small, 3], extents[large, 3]) - np.maximum(extents[small, 1], extents[large, 1])
        possible = ((self.classes[small] == self.classes[large]) & (areas[large] > areas[small]) & (areas[small] > 0)
                    & (self.scores[large] > self.scores[small])
                    & (np.clip(width, 0, None) * np.clip(height, 0, None) >= max_inside * areas[small]))
        fragment = np.zeros(len(self), dtype=bool)
        for i, j in zip(small[possible].tolist(), large[possible].tolist()):
            if not fragment[i] and self.masks[i].overlap(self.masks[j]) >= max_inside * areas[i]:
                fragment[i] = True
        return self if not fragment.any() else self.subset(np.flatnonzero(~fragment))

    def union_mask(self, indices: Sequence[int]) -> np.ndarray:
        """The full-size (H, W) = ``image_size`` bool union of the masks at ``indices`` (for images small
        enough to hold one)."""
        canvas = np.zeros(self.image_size, dtype=bool)
        for i in indices:
            self.masks[i].paste(canvas)
        return canvas

    def cell_nuclei(self, cell_class: int, nucleus_class: Optional[int], min_overlap: float = MIN_NUCLEUS_OVERLAP
                    ) -> List[Tuple[int, Optional[MaskCrop]]]:
        """(cell index, its nucleus inside the cell, or None) for every cell detection, in order: the
        cell's own predicted nucleus where the model predicts one (None where it is empty), else the
        nucleus detection :meth:`match_nuclei` pairs with it, cut to the cell."""
        if self.nuclei is not None:
            return [(int(i), self.nuclei[i] if self.nuclei[i].area else None)
                    for i in np.flatnonzero(self.classes == cell_class)]
        return [(i, None if j is None else self.masks[j].clipped_to(self.masks[i]))
                for i, j in self.match_nuclei(cell_class, nucleus_class, min_overlap)]

    def match_nuclei(self, cell_class: int, nucleus_class: Optional[int], min_overlap: float = MIN_NUCLEUS_OVERLAP
                     ) -> List[Tuple[int, Optional[int]]]:
        """(cell index, nucleus index or None) for every cell detection, in order. A cell takes the
        nucleus with the largest overlap = |nucleus & cell| / |nucleus|, if that is at least
        ``min_overlap`` (a nucleus mostly outside belongs to a neighbour). Nuclei may serve several
        cells."""
        cells = np.flatnonzero(self.classes == cell_class)
        nuclei = np.flatnonzero(self.classes == nucleus_class) if nucleus_class is not None else cells[:0]
        nucleus_area = np.array([max(self.masks[j].area, 1) for j in nuclei])
        extents = self.mask_extents()
        nucleus_extents = extents[nuclei]
        pairs: List[Tuple[int, Optional[int]]] = []
        for i in cells:
            best = None
            if nuclei.size:
                x0, y0, x1, y1 = extents[i]
                near = ((nucleus_extents[:, 0] < x1) & (nucleus_extents[:, 2] > x0)
                        & (nucleus_extents[:, 1] < y1) & (nucleus_extents[:, 3] > y0))
                overlap = np.zeros(len(nuclei))
                for k in np.flatnonzero(near):
                    overlap[k] = self.masks[i].overlap(self.masks[nuclei[k]]) / nucleus_area[k]
                top = int(np.argmax(overlap))
                if overlap[top] >= min_overlap and overlap[top] > 0:
                    best = int(nuclei[top])
            pairs.append((int(i), best))
        return pairs


def round_half_up(value: float) -> int:
    """``value`` rounded half up, for pixel positions and sizes (Python's round sends halves to the even
    neighbour, 12.5 to 12 and 37.5 to 38, so a scaled mask or a crop would shift by a pixel at random)."""
    return int(np.floor(value + 0.5))


def _pasted(masks: Sequence[MaskCrop], image_size: Tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool: each of ``masks`` in a canvas of its own."""
    canvas = np.zeros((len(masks), *image_size), dtype=bool)
    for mask, plane in zip(masks, canvas):
        mask.paste(plane)
    return canvas


def _extents(masks: Sequence[MaskCrop]) -> np.ndarray:
    return np.array([(m.x, m.y, m.x + m.mask.shape[1], m.y + m.mask.shape[0]) for m in masks],
                    dtype=np.int64).reshape(-1, 4)


@dataclass(frozen=True)
class CellScale:
    """An image's median cell diameter (``diameter``, pixels), where it came from (``source``: "given",
    "frame size" or "estimated") and how it was found (``detail``, for the log and the reports)."""
    diameter: float
    source: str
    detail: str = ""

    def describe(self) -> str:
        return f"{self.diameter:.0f} px, {self.source}" + (f" ({self.detail})" if self.detail else "")
