"""Image files: which files count as images, how a folder is listed and how an image is read.

Every reader and tool lists folders with :func:`image_files`, so a ``.TIF`` or a ``.jpeg`` counts the
same everywhere; an image's id is its file name without extension (SegPC ``x/<id>.bmp``).
"""
import logging
import os
from typing import Any, Iterator, List, Mapping, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from ..utils.errors import InputError
from .report import DatasetError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")

Failure = Tuple[str, str]  # (path, why it was skipped)


def is_image_file(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def image_files(folder: str) -> List[str]:
    """Paths of the image files directly in ``folder`` (not recursive), sorted by name."""
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if is_image_file(name) and os.path.isfile(os.path.join(folder, name))]


def image_stem(path: str) -> str:
    """The image id of a file: its name without extension."""
    return os.path.splitext(os.path.basename(path))[0]


def list_images(path: str) -> List[str]:
    """``[path]`` for a file, :func:`image_files` for a folder. Raises InputError for a missing path,
    a folder without images, and two files with the same stem (``a.bmp`` and ``a.png``): the stem
    names the outputs."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise InputError(f"{path}: no such file or folder")
    files = image_files(path)
    seen = {}
    for file in files:
        stem = image_stem(file)
        if stem in seen:
            raise InputError(f"{file} and {seen[stem]} share the image id {stem!r}")
        seen[stem] = file
    if not files:
        raise InputError(f"{path}: no images in it ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def read_image(path: str) -> np.ndarray:
    """HxWx3 uint8 BGR image (any format OpenCV reads; 16-bit and grey images are converted);
    raises DatasetError naming the file when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(path, "cannot read image (missing, truncated or not an image)")
    return image


def record_crop(image: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    """The part of a record's image file that its annotations and ``height``/``width`` describe: the
    ``"crop"`` box ``[x0, y0, x1, y1]`` (file pixels) when the reader cut padding away, else all of it."""
    if "crop" not in record:
        return image
    x0, y0, x1, y1 = record["crop"]
    return image[y0:y1, x0:x1]


def read_record_image(record: Mapping[str, Any]) -> np.ndarray:
    """HxWx3 uint8 BGR image of a dataset record, cropped as :func:`record_crop` says."""
    return record_crop(read_image(record["file_name"]), record)


def iter_images(paths: Sequence[str], failures: List[Failure], desc: str = "images"
                ) -> Iterator[Tuple[str, np.ndarray]]:
    """``(path, BGR image)`` of every readable file, with a progress bar; unreadable files are appended
    to ``failures`` and skipped, so one bad file in a folder of hundreds costs that file only."""
    for path in tqdm(paths, desc=desc, unit="image"):
        try:
            image = read_image(path)
        except DatasetError as err:
            logger.warning("%s", err)
            failures.append((str(path), err.problem))
            continue
        yield path, image
