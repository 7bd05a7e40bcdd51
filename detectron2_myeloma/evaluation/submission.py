"""Detectron2 predictions (or SegPC mask folders) -> SegPC-2021 ``submission.txt``, and optionally
per-cell 0/20/40 masks.

A submitted instance is a (nucleus, cytoplasm) pair of pixel lists in the 1080x1440 frame, and one
empty list breaks the official parser and zeroes the whole image. Hence a completion rule
(:func:`complete_cell`), applied in the frame the lists are written in, i.e. AFTER resizing to
1080x1440 (and separately at the original resolution for the ``masks_out`` files). It never changes
nucleus U cytoplasm, which is all the score looks at:

1. a cell of fewer than 2 pixels cannot hold both parts: it is dropped, and counted;
2. no nucleus (none predicted, a model without a nucleus class, or the nucleus vanished in resizing):
   the nucleus is estimated as the cell's inner core, the pixels farthest from the background
   (distance transform) making up ``NUCLEUS_AREA_FRACTION`` of the cell (0.4: the median nucleus/cell
   area ratio of the 90 bundled SegPC-2021 cells);
3. no cytoplasm (the nucleus fills the cell): the cytoplasm is the cell's outer ring, the cell pixels
   with a background pixel among their 8 neighbours (one pixel thick), and the nucleus the rest;
4. a cell so thin that the ring is all of it: the nucleus is its one innermost pixel.
"""
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple, Optional, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ..data.segpc_format import (
    CYTOPLASM_VALUE,
    NUCLEUS_VALUE,
    cell_and_nucleus,
    format_submission_line,
    gt_mask_files,
    read_segpc_mask,
    resize_to_submission,
)
from ..data.images import image_stem, list_images
from ..structures import MIN_NUCLEUS_OVERLAP, CellDetections
from ..utils.atomic import OutputFolder, check_output_file
from ..utils.errors import InputError

logger = logging.getLogger(__name__)

NUCLEUS_AREA_FRACTION = 0.4  # estimated nucleus area / cell area (rule 2)
MIN_CELL_PIXELS = 2  # a submitted cell needs a nucleus pixel and a cytoplasm pixel (rule 1)

# Which rule produced a submitted instance (see the module docstring).
PREDICTED = "predicted"
ESTIMATED_NUCLEUS = "estimated nucleus"
RING_CYTOPLASM = "ring cytoplasm"
ONE_PIXEL_NUCLEUS = "one-pixel nucleus"

Parts = Tuple[np.ndarray, np.ndarray]  # (nucleus, cytoplasm) boolean masks of one cell


class CellParts(NamedTuple):
    """A completed cell: disjoint HxW bool ``nucleus`` and ``cytoplasm`` (the cell's size) and the
    ``rule`` of the module docstring that made them."""
    nucleus: np.ndarray
    cytoplasm: np.ndarray
    rule: str


def _bbox_window(mask: np.ndarray) -> Optional[Tuple[slice, slice]]:
    """Slices of the mask's bounding box, None for an empty mask (work is done on the box only)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def complete_cell(cell: np.ndarray, nucleus: np.ndarray) -> Optional[CellParts]:
    """Non-empty, disjoint (nucleus, cytoplasm) whose union is ``cell``, by the rule of the module
    docstring; the nucleus is clipped to the cell. None when the cell has fewer than 2 pixels.

    Args:
        cell: HxW mask of one cell, any dtype (nonzero pixels set).
        nucleus: HxW mask of its nucleus, likewise; may be empty or reach outside the cell.

    Returns:
        :class:`CellParts` of HxW bool masks, or None.
    """
    cell = np.asarray(cell, dtype=bool)
    if np.count_nonzero(cell) < MIN_CELL_PIXELS:
        return None
    window = _bbox_window(cell)
    inside = cell[window]
    core = np.asarray(nucleus, dtype=bool)[window] & inside
    # Exact Euclidean distance to the background; the 1-pixel padding makes the box border background.
    dist = cv2.distanceTransform(np.pad(inside, 1).astype(np.uint8), cv2.DIST_L2,
                                 cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    rule = PREDICTED
    if not core.any():
        ranked = np.sort(dist[inside])[::-1]
        keep = max(1, round(NUCLEUS_AREA_FRACTION * ranked.size))
        core = dist >= ranked[keep - 1]  # ranked values are >= 1, so only cell pixels qualify
        rule = ESTIMATED_NUCLEUS
    cytoplasm = inside & ~core
    if not cytoplasm.any():
        cytoplasm = inside & (dist < 1.5)  # distance 1 or sqrt(2): touches the background
        core = inside & ~cytoplasm
        rule = RING_CYTOPLASM
        if not core.any():
            core = np.zeros_like(inside)
            core[np.unravel_index(np.argmax(dist), dist.shape)] = True
            cytoplasm = inside & ~core
            rule = ONE_PIXEL_NUCLEUS
    full_nucleus, full_cytoplasm = np.zeros_like(cell), np.zeros_like(cell)
    full_nucleus[window], full_cytoplasm[window] = core, cytoplasm
    return CellParts(full_nucleus, full_cytoplasm, rule)


def select_cells(detections: CellDetections, cell_class: int, score_threshold: float = 0.5,
                 max_instances: int = 100) -> CellDetections:
    """Detections with ``score >= score_threshold``, best first, keeping at most ``max_instances``
    cells (detections of other classes, i.e. nuclei, are all kept: each can serve a kept cell)."""
    order = np.argsort(-detections.scores, kind="stable")
    order = order[detections.scores[order] >= score_threshold]
    is_cell = detections.classes[order] == cell_class
    return detections.subset(order[~is_cell | (np.cumsum(is_cell) - 1 < max_instances)])


def iter_cell_parts(detections: CellDetections, cell_class: int, nucleus_class: Optional[int],
                    min_overlap: float = MIN_NUCLEUS_OVERLAP) -> Iterator[Parts]:
    """(nucleus, cytoplasm) of every cell detection, full-size ((H, W) = ``detections.image_size``
    bool), one cell at a time (only one cell's masks are held): the cell's own predicted nucleus where
    the model predicts one, else the nucleus detection paired with it
    (:meth:`~detectron2_myeloma.structures.CellDetections.cell_nuclei`), cut to the cell; and the cell
    minus it. The nucleus may be empty here (e.g. ``nucleus_class`` None);
    :class:`SubmissionWriter` completes it."""
    for index, nucleus in detections.cell_nuclei(cell_class, nucleus_class, min_overlap):
        cell = detections.union_mask([index])
        core = np.zeros_like(cell)
        if nucleus is not None:
            nucleus.paste(core)
            core &= cell
        yield core, cell & ~core


def submission_parts(detections: CellDetections, cell_class: int, nucleus_class: Optional[int],
                     score_threshold: float = 0.5, max_instances: int = 100) -> Iterator[Parts]:
    """An image's detections -> the (nucleus, cytoplasm) pairs to give :meth:`SubmissionWriter.write`,
    full-size (H, W) bool as :func:`iter_cell_parts` yields them."""
    return iter_cell_parts(select_cells(detections, cell_class, score_threshold, max_instances),
                           cell_class, nucleus_class)


@dataclass
class SubmissionStats:
    """What a :class:`SubmissionWriter` wrote: images, instances, dropped cells, rules applied."""

    images: int = 0
    instances: int = 0
    dropped: int = 0  # cells under 2 pixels in the 1080x1440 frame
    rules: Counter = field(default_factory=Counter)  # submitted instances per completion rule

    def summary(self) -> str:
        rules = ", ".join(f"{n} {rule}" for rule, n in sorted(self.rules.items()))
        return (f"{self.images} images, {self.instances} instances ({rules or 'none'}), "
                f"{self.dropped} cells dropped (under 2 pixels at 1080x1440)")


class SubmissionWriter:
    """Context manager writing ``submission.txt`` one image line at a time.

    The file is written to ``<path>.<pid>.tmp`` and renamed to ``path`` on a clean exit, so an error
    leaves no partial submission behind. With ``masks_out``, the k-th instance of image ``<id>`` is also
    saved as ``masks_out/<id>_<k>.bmp`` (uint8, 20 = cytoplasm, 40 = nucleus) at the resolution of the
    masks given, in an :class:`~detectron2_myeloma.utils.atomic.OutputFolder` (new or empty unless
    ``overwrite``; it appears complete or not at all). Both paths are checked when the writer is made,
    so make it before the work whose result it writes.
    """

    def __init__(self, path: str, masks_out: Optional[str] = None, overwrite: bool = False):
        self.path = str(path)
        check_output_file(self.path)
        self._masks_folder = OutputFolder(masks_out, overwrite, tool="make_submission") if masks_out else None
        self.masks_out: Optional[str] = None  # the folder being written, inside the 'with' block
        self.stats = SubmissionStats()
        self._tmp = f"{self.path}.{os.getpid()}.tmp"
        self._file = None
        self._ids: set = set()

    def __enter__(self) -> "SubmissionWriter":
        if self._masks_folder is not None:
            self.masks_out = self._masks_folder.__enter__()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open(self._tmp, "w", encoding="ascii", newline="\n")
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._file.close()
        self._file = None
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)
        if self._masks_folder is not None:
            self._masks_folder.__exit__(exc_type, exc, traceback)

    def write(self, image_id: str, parts: Iterable[Parts]) -> int:
        """Write the line of ``image_id`` (just the id when ``parts`` is empty) from (nucleus,
        cytoplasm) masks at any one resolution (HxW, any dtype: nonzero pixels set); returns the number
        of instances written."""
        if self._file is None:
            raise RuntimeError("SubmissionWriter.write outside its 'with' block")
        if image_id in self._ids:
            raise ValueError(f"image {image_id} written twice")
        fields = [format_submission_line(image_id, [])]  # validates the id
        for nucleus, cytoplasm in parts:
            nucleus = np.asarray(nucleus, dtype=bool)
            cell = nucleus | np.asarray(cytoplasm, dtype=bool)
            framed = complete_cell(resize_to_submission(cell), resize_to_submission(nucleus))
            if framed is None:
                self.stats.dropped += 1
                continue
            self.stats.rules[framed.rule] += 1
            # One instance per call keeps one cell's frame masks in memory; the syntax stays in segpc_format.
            fields.append(format_submission_line(image_id, [framed[:2]]).split("\t", 1)[1])
            if self.masks_out:
                self._write_mask(f"{image_id}_{len(fields) - 1}.bmp", cell, nucleus)
        self._file.write("\t".join(fields) + "\n")
        self._ids.add(image_id)
        self.stats.images += 1
        self.stats.instances += len(fields) - 1
        return len(fields) - 1

    def _write_mask(self, name: str, cell: np.ndarray, nucleus: np.ndarray) -> None:
        """0/20/40 mask of one cell, completed at its own resolution when it has 2 pixels or more."""
        parts = complete_cell(cell, nucleus) or CellParts(nucleus & cell, cell & ~nucleus, PREDICTED)
        values = np.zeros(cell.shape, dtype=np.uint8)
        values[parts.cytoplasm] = CYTOPLASM_VALUE
        values[parts.nucleus] = NUCLEUS_VALUE
        path = os.path.join(self.masks_out, name)
        if not cv2.imwrite(path, values):
            raise OSError(f"{path}: cannot write mask")


def write_masks_submission(masks_in: str, output: str, images: Optional[str] = None,
                           masks_out: Optional[str] = None, overwrite: bool = False,
                           recursive: bool = False) -> SubmissionStats:
    """Submission from a SegPC mask folder (``<id>_<k>.bmp/png``, 0/20/40), e.g. to check the
    pipeline on ground truth (it scores 1.0). With ``images`` (a folder; ``recursive``: and its
    subfolders), every image there gets a line, an empty one when it has no masks; masks of ids with
    no image are still written.

    InputError, and nothing written, for bad paths, a folder without masks or masks that all vanish at
    1080x1440 (nothing to submit); a mask too small to submit is named in a warning."""
    files = gt_mask_files(masks_in)
    writer = SubmissionWriter(output, masks_out, overwrite)
    ids = list(files)
    if images is not None:
        image_ids = [image_stem(path) for path in list_images(images, recursive)]
        listed = set(image_ids)
        orphans = [image_id for image_id in ids if image_id not in listed]
        if orphans:
            logger.warning("%d mask ids have no image in %s: %s", len(orphans), images,
                           ", ".join(orphans[:5]))
        ids = image_ids + orphans

    def parts(image_id: str) -> Iterator[Parts]:
        for path in files.get(image_id, []):
            cell, nucleus = cell_and_nucleus(read_segpc_mask(path))
            framed = np.count_nonzero(resize_to_submission(cell))
            if framed < MIN_CELL_PIXELS:  # the writer drops it, and counts it without a name
                logger.warning("%s: cell of %d pixels, %d at 1080x1440 (under %d): not submitted", path,
                               np.count_nonzero(cell), framed, MIN_CELL_PIXELS)
            yield nucleus, cell & ~nucleus

    with writer:
        for image_id in tqdm(ids, desc="images", unit="image"):
            writer.write(image_id, parts(image_id))
        if not writer.stats.instances:
            raise InputError(f"{masks_in}: no mask holds a cell of {MIN_CELL_PIXELS} pixels or more at "
                             "1080x1440: nothing to submit")
    return writer.stats
