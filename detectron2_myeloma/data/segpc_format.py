"""The SegPC-2021 formats, in one place: mask values, file naming, mask reading.

Used alike by the dataset reader, the submission writer and the scorer, so that the three can never
disagree about what a nucleus is or where a mask file lives.
"""
import os
import re
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .images import IMAGE_EXTENSIONS, image_files, read_mask
from .report import DatasetError

BACKGROUND_VALUE = 0
CYTOPLASM_VALUE = 20
NUCLEUS_VALUE = 40
MASK_VALUES = (BACKGROUND_VALUE, CYTOPLASM_VALUE, NUCLEUS_VALUE)

LOSSY_EXTENSIONS = (".jpg", ".jpeg")

# `y/<id>_<k>.<ext>`: image id, then the cell's index k within the image.
_MASK_NAME = re.compile(r"^(?P<image_id>.+)_(?P<k>\d+)$")


def split_mask_name(path: str) -> Tuple[str, int]:
    """``y/1991_12.png`` -> ("1991", 12); raises DatasetError for names not of that form."""
    stem, _ = os.path.splitext(os.path.basename(path))
    match = _MASK_NAME.match(stem)
    if not match:
        raise DatasetError(path, "mask file name is not '<image id>_<k>.<ext>'")
    return match["image_id"], int(match["k"])


def read_segpc_mask(path: str) -> np.ndarray:
    """Read one SegPC cell mask as a HxW uint8 array of values 0/20/40.

    Masks may be 1-channel or 3-channel (values in one channel, or repeated): the channel-wise maximum
    is taken. Lossless files must hold exactly 0/20/40; JPEG masks are snapped to the nearest value.
    """
    raw = read_mask(path)
    if raw.dtype != np.uint8:
        raise DatasetError(path, f"mask has pixel type {raw.dtype}, expected 8-bit values 0/20/40")
    if str(path).lower().endswith(LOSSY_EXTENSIONS):
        levels = np.array(MASK_VALUES, dtype=np.int16)
        raw = levels[np.abs(raw[..., None].astype(np.int16) - levels).argmin(axis=2)].astype(np.uint8)
    present = np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
    bad = sorted(set(present.tolist()) - set(MASK_VALUES))
    if bad:
        shown = ", ".join(map(str, bad[:8])) + (" ..." if len(bad) > 8 else "")
        raise DatasetError(path, f"mask values must be 0, 20 (cytoplasm) or 40 (nucleus); found {shown}")
    return raw


def cell_and_nucleus(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """HxW bool (whole cell = nucleus U cytoplasm, nucleus) masks of an HxW 0/20/40 (uint8) mask."""
    return mask > BACKGROUND_VALUE, mask == NUCLEUS_VALUE


# --- Submission frame and `submission.txt` syntax -------------------------------------------------
# The official scorer resizes everything to this frame, and submissions list pixels in it.
SUBMISSION_SHAPE = (1080, 1440)  # rows, columns

_DIGIT_LIMITS = 10 ** np.arange(1, 19, dtype=np.int64)  # 10, 100, ...: digit counts of int64 values


def resize_to_submission(mask: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resize of an HxW mask (bool or 0/20/40 uint8) to the submission frame, as the
    official scorer does it; returns the (1080, 1440) bool "pixel > 0" mask."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        mask = mask.view(np.uint8)
    if mask.shape[:2] != SUBMISSION_SHAPE:
        rows, cols = SUBMISSION_SHAPE
        mask = cv2.resize(np.ascontiguousarray(mask), (cols, rows), interpolation=cv2.INTER_NEAREST)
    return mask > 0


def _join_pairs(first: np.ndarray, second: np.ndarray) -> str:
    """``"f0,s0;f1,s1;..."`` for non-negative integer arrays, written digit by digit with numpy (a
    cell can hold tens of thousands of pixels, so per-pixel string formatting would be slow)."""
    values = np.stack([first, second], axis=1).astype(np.int64).ravel()  # f0, s0, f1, s1, ...
    digits = 1 + np.searchsorted(_DIGIT_LIMITS, values, side="right")
    starts = np.concatenate([[0], np.cumsum(digits + 1)[:-1]])  # each number is followed by a separator
    out = np.empty(int(starts[-1] + digits[-1] + 1), dtype=np.uint8)
    out[starts + digits] = ord(";")
    out[starts[0::2] + digits[0::2]] = ord(",")
    for position in range(int(digits.max())):  # at most 19 passes, each over every number
        has = digits > position
        power = 10 ** (digits[has] - 1 - position)
        out[starts[has] + position] = ord("0") + (values[has] // power) % 10
    return out[:-1].tobytes().decode("ascii")


def encode_pixel_list(mask: np.ndarray) -> str:
    """``"r,c;r,c;..."`` of the True (nonzero) pixels of an HxW mask, row-major. Raises ValueError for
    an empty mask: an empty list breaks the official parser and zeroes the whole image."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("empty mask: the SegPC submission format cannot hold an empty pixel list")
    return _join_pairs(rows, cols)


def decode_pixel_list(text: str, shape: Tuple[int, int] = SUBMISSION_SHAPE) -> np.ndarray:
    """Bool mask of ``shape`` (rows, columns) from ``"r,c;r,c;..."``; ValueError for anything else
    (empty list, stray characters, a missing coordinate, a pixel outside the frame)."""
    text = text.strip()
    if not text:
        raise ValueError("empty pixel list")
    chars = np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8)
    is_separator = (chars == ord(",")) | (chars == ord(";"))
    is_digit = (chars >= ord("0")) & (chars <= ord("9"))
    if not np.all(is_separator | is_digit):
        bad = chr(int(chars[~(is_separator | is_digit)][0]))
        raise ValueError(f"pixel list may hold only digits, ',' and ';'; found {bad!r}")
    separators = chars[is_separator]
    positions = np.flatnonzero(is_separator)
    if (
        separators.size % 2 == 0
        or np.any(separators[0::2] != ord(","))
        or np.any(separators[1::2] != ord(";"))
        or np.any(np.diff(positions) < 2)
        or not (is_digit[0] and is_digit[-1])
    ):
        raise ValueError("pixel list is not of the form 'row,col;row,col;...'")
    coords = np.fromstring(text.replace(";", ","), dtype=np.int64, sep=",").reshape(-1, 2)
    rows, cols = coords[:, 0], coords[:, 1]
    if rows.max() >= shape[0] or cols.max() >= shape[1]:
        raise ValueError(f"pixel outside the {shape[0]}x{shape[1]} frame (rows, columns)")
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def format_submission_line(image_id: str, instances: Sequence[Tuple[np.ndarray, np.ndarray]]) -> str:
    """One ``submission.txt`` line (no newline): the id, then per instance a TAB and
    ``<nucleus pixels> <cytoplasm pixels>``. Masks must already be in the submission frame: (1080,
    1440) bool."""
    image_id = str(image_id)
    if not image_id or any(ch.isspace() for ch in image_id):
        raise ValueError(f"image id {image_id!r} is empty or holds whitespace")
    fields = [image_id]
    for index, (nucleus, cytoplasm) in enumerate(instances):
        for name, mask in (("nucleus", nucleus), ("cytoplasm", cytoplasm)):
            if mask.shape != SUBMISSION_SHAPE:
                raise ValueError(f"{image_id} instance {index}: {name} mask is {mask.shape}, "
                                 f"expected {SUBMISSION_SHAPE}; use resize_to_submission")
        fields.append(f"{encode_pixel_list(nucleus)} {encode_pixel_list(cytoplasm)}")
    return "\t".join(fields)


CellPairs = List[Tuple[np.ndarray, np.ndarray]]  # the (nucleus, cytoplasm) masks of one submission line

MESSAGE_LIMIT = 100  # characters of file content quoted in a message


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, "..." marking the cut: a broken line (a whole line of
    pixels taken for an image id) must never flood a message."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


class SubmissionLineError(DatasetError):
    """A malformed ``submission.txt`` line: ``line`` its number, ``image_id`` the id it starts with
    (None when it starts with none), so that a scorer that skips the line can still tell whose it was."""

    def __init__(self, path: str, line: int, problem: str, image_id: Optional[str] = None,
                 instance: Optional[int] = None):
        where = f"line {line}" if instance is None else f"line {line}, instance {instance}"
        super().__init__(path, f"{where}: {problem}")
        self.line = line
        self.image_id = image_id


def _parse_line(path: str, line_no: int, line: str) -> Tuple[str, CellPairs]:
    """(image id, instances) of one non-blank line; SubmissionLineError when it is malformed."""
    image_id, *fields = line.split("\t")
    if not image_id or image_id != image_id.lstrip():
        raise SubmissionLineError(path, line_no, "line must start with the image id")
    if any(ch.isspace() for ch in image_id):
        first = image_id.split()[0]
        raise SubmissionLineError(path, line_no, f"image id {shorten(first)!r} is followed by a space, not a "
                                                 "tab (fields separated by spaces, not tabs?)", first)
    instances = []
    for index, field in enumerate(fields, start=1):
        parts = field.split(" ")
        if len(parts) != 2:
            hint = " (instances separated by spaces, not tabs?)" if len(parts) > 2 else ""
            raise SubmissionLineError(path, line_no, "expected '<nucleus pixels> <cytoplasm pixels>', got "
                                                     f"{len(parts)} space-separated parts{hint}",
                                      image_id, index)
        try:
            instances.append((decode_pixel_list(parts[0]), decode_pixel_list(parts[1])))
        except ValueError as err:
            raise SubmissionLineError(path, line_no, str(err), image_id, index) from None
    return image_id, instances


def iter_submission(path: str, malformed: Optional[List[SubmissionLineError]] = None
                    ) -> Iterator[Tuple[int, str, CellPairs]]:
    """Yield ``(line number, image_id, [(nucleus, cytoplasm), ...])`` line by line, the masks (1080,
    1440) bool, so that a scorer can hold one image's masks at a time. A malformed line raises
    SubmissionLineError naming the file and line; given a ``malformed`` list, it is appended there and
    skipped instead, so that a scorer can report every broken line, not just the first. DatasetError
    for a missing file."""
    if not os.path.isfile(path):
        raise DatasetError(path, "no such file")
    seen: Dict[str, int] = {}
    with open(path, encoding="ascii", errors="replace") as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                image_id, instances = _parse_line(path, line_no, line)
                if image_id in seen:
                    raise SubmissionLineError(path, line_no, f"image {shorten(image_id)} already listed on "
                                                             f"line {seen[image_id]}", image_id)
            except SubmissionLineError as err:
                if malformed is None:
                    raise
                malformed.append(err)
                continue
            seen[image_id] = line_no
            yield line_no, image_id, instances


def read_submission(path: str) -> Dict[str, List[Tuple[np.ndarray, np.ndarray]]]:
    """The whole ``submission.txt`` as {image id: [(nucleus, cytoplasm) bool masks]} in the submission
    frame, (1080, 1440) each (about 3 MB per instance: use :func:`iter_submission` for large files)."""
    return {image_id: instances for _, image_id, instances in iter_submission(path)}


def gt_mask_files(y_dir: str) -> Dict[str, List[str]]:
    """{image id: mask paths ordered by cell index k} of a SegPC ``y/`` folder; raises DatasetError for
    a missing folder, one without masks (nothing to score or submit), and two files with the same id
    and k (e.g. ``1_1.bmp`` beside ``1_1.png``)."""
    if not os.path.isdir(y_dir):
        raise DatasetError(y_dir, "no such folder")
    found: Dict[str, Dict[int, str]] = defaultdict(dict)
    for path in image_files(y_dir):
        image_id, k = split_mask_name(path)
        if k in found[image_id]:
            raise DatasetError(path, f"cell {k} of image {image_id} also in {found[image_id][k]}")
        found[image_id][k] = path
    if not found:
        raise DatasetError(y_dir, f"no <image id>_<k> masks in it ({', '.join(IMAGE_EXTENSIONS)})")
    return {image_id: [cells[k] for k in sorted(cells)] for image_id, cells in sorted(found.items())}
