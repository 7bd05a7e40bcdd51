"""Image files: which files count as images, how a folder is listed and how an image is read.

Every reader and tool lists folders with :func:`image_files`, so a ``.TIF`` or a ``.jpeg`` counts the
same everywhere; an image's id is its file name without extension (SegPC ``x/<id>.bmp``).

Every image and mask in the project is decoded here, by :func:`decode_image`, so that every tool reads
a file the same way or refuses it with the same one-line :class:`DatasetError`. What is read:

* BMP, PNG, JPEG (also multi-picture MPO from cameras), GIF, WebP and TIFF, whatever the file's
  extension says; EXIF orientation is applied (as viewers and Detectron2 show the image).
* 8-bit grey, palette, grey + alpha, RGB, RGBA and CMYK; transparent pixels are laid on white (a
  slide's background).
* Microscope-camera pixels deeper than 8 bits (10/12/14/16-bit in 16-bit files, 32-bit integers) are
  scaled by the smallest bit depth that holds the brightest pixel, so a 12-bit frame is not left
  dark; floating point within [0, 1] is scaled by 255.
* TIFF through tifffile (with imagecodecs: LZW, deflate, JPEG, zstd...): planar (channels-first) RGB,
  OME/ImageJ hyperstacks with one plane, and pyramidal slide-scanner files (the full-resolution
  level). Orientation tags of TIFFs are not applied, as microscopy software does not apply them.

What is refused, naming the file: a missing, empty or truncated file, anything the decoder warns about
(a damaged file it would half-read), a file that is not an image, more than one plane (z-stacks, time
series: save the plane to analyse), other channel counts, negative or non-finite pixel values, and a
PNG, JPEG or other non-TIFF image over PIL's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb guard).
"""
import functools
import logging
import os
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tifffile
from PIL import Image, ImageOps
from tqdm import tqdm

from ..utils.errors import InputError, one_line
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


def _images_below(folder: str) -> List[str]:
    """:func:`image_files` of ``folder`` and then of each subfolder, depth first in name order (hidden
    folders, such as a tool's ``.<name>.partial`` output, skipped; links to folders not followed)."""
    found = []
    for root, subfolders, _ in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found.extend(image_files(root))
    return found


def list_images(path: str, recursive: bool = False) -> List[str]:
    """``[path]`` for a file; for a folder, :func:`image_files` (with ``recursive``,
    :func:`_images_below`). Raises InputError for a missing path, a folder without images (naming the
    subfolders that hold some, the usual slip being a dataset's root for its ``x/``), and two files
    with the same stem (``a.bmp`` and ``a.png``, or ``x/a.bmp`` and ``y/a.bmp``): the stem names the
    outputs."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise InputError(f"{path}: no such file or folder")
    files = _images_below(path) if recursive else image_files(path)
    seen = {}
    for file in files:
        stem = image_stem(file)
        if stem in seen:
            raise InputError(f"{file} and {seen[stem]} share the image id {stem!r}, which names their outputs")
        seen[stem] = file
    if not files:
        held = {} if recursive else _subfolder_images(path)
        if held:
            names = [f"{name}/" for name in held]
            named = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise InputError(f"{path}: holds no images, but its subfolders {named} hold {sum(held.values())}: "
                             "pass one of them, or add --recursive")
        raise InputError(f"{path}: no images in it ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _subfolder_images(folder: str) -> Dict[str, int]:
    """The number of images directly in each subfolder of ``folder`` that holds some, by name (one
    level down only: a hint must not walk a whole disk; unreadable subfolders skipped)."""
    held = {}
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if entry.is_dir() and not entry.name.startswith("."):
            try:
                count = len(image_files(entry.path))
            except OSError:
                continue
            if count:
                held[entry.name] = count
    return held


# The first bytes of a TIFF or a BigTIFF, in either byte order.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# PIL modes that become RGB(A) before the pixels are taken; the rest ("L", "LA", "RGB", "RGBA", "I;16",
# "I", "F") are taken as they are.
_PIL_CONVERSIONS = {"1": "L", "P": "RGB", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB",
                    "HSV": "RGB", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}


def decode_image(path: str) -> np.ndarray:
    """The pixels of an image file as stored: HxW or HxWxC (RGB order, alpha last; C is 2, 3 or 4, or
    from a TIFF any count, which :func:`pixels_to_image` checks), the file's pixel type (uint8 for 8-bit
    files; wider integers or floats for deeper ones; bool for a 1-bit TIFF), palette expanded, EXIF
    orientation applied. Decodes the whole file, so a truncated or damaged one raises DatasetError
    naming it (see the module docstring for what is read and refused)."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise DatasetError(path, f"cannot open image ({err.strerror or err})") from None
    if not magic:
        raise DatasetError(path, "empty file (0 bytes)")
    try:
        array = _decode_tiff(path) if magic in TIFF_MAGIC else _decode_pil(path)
    except DatasetError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DatasetError(path, f"too many pixels to decode whole ({one_line(err)})") from None
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, EOFError, RuntimeError,
            Warning) as err:
        raise DatasetError(path, f"unreadable, truncated or damaged image ({one_line(err)})") from None
    if array.size == 0:
        raise DatasetError(path, "no pixels in it (truncated or damaged image)")
    return array


def _decode_pil(path: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a decoder's warning means a damaged file it half-read
        with Image.open(path) as img:
            img.load()  # decodes everything: a truncated file raises here, not as a grey image later
            img = ImageOps.exif_transpose(img)
            if img.mode in _PIL_CONVERSIONS:
                mode = _PIL_CONVERSIONS[img.mode]
                if img.mode == "P" and "transparency" in img.info:
                    mode = "RGBA"
                img = img.convert(mode)
            return np.array(img)  # a writable copy (np.asarray of a PIL image is read-only)


def _decode_tiff(path: str) -> np.ndarray:
    with tifffile_warnings_raise(path), tifffile.TiffFile(path) as tif:
        if not tif.pages or not tif.series:
            raise DatasetError(path, "no image in this TIFF (truncated or damaged)")
        series = tif.series[0]
        level = series.levels[0] if series.levels else series  # pyramid: the full resolution
        array = level.asarray()
        axes = level.axes
    keep = [i for i, axis in enumerate(axes) if axis in "YX" or array.shape[i] > 1]
    array = array.reshape([array.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    planes = [axis for axis in axes if axis not in "YXSC"]
    if planes or len([a for a in axes if a in "SC"]) > 1:
        raise DatasetError(path, f"TIFF holds several planes (shape {array.shape}, axes {axes}): save the "
                                 "plane to analyse as its own image")
    if axes in ("SYX", "CYX"):
        array = np.moveaxis(array, 0, -1)
    return array


@contextmanager
def tifffile_warnings_raise(path: str) -> Iterator[None]:
    """tifffile logs damaged files (bad offsets, short strips) instead of raising: make them errors."""
    records: List[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addHandler(handler)
    propagate, tiff_logger.propagate = tiff_logger.propagate, False
    try:
        yield
    finally:
        tiff_logger.removeHandler(handler)
        tiff_logger.propagate = propagate
    if records:
        raise DatasetError(path, f"damaged TIFF ({one_line(Exception(records[0].getMessage()))})")


def _to_uint8(array: np.ndarray, path: str, bits: Optional[int] = None) -> np.ndarray:
    """8-bit pixels: deeper integers scaled by the bit depth their brightest pixel needs (``bits``,
    when the brightest pixel of the whole image is known and ``array`` is a part of it)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise DatasetError(path, f"floating-point pixels outside [0, 1] (min {np.nanmin(array):.4g}, "
                                     f"max {np.nanmax(array):.4g}): save the image as 8 or 16-bit integers")
        return np.round(array * 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0:
            raise DatasetError(path, f"negative pixel values ({array.dtype}, min {array.min()})")
        bits = bits or integer_bit_depth(int(array.max()))
        return np.round(array.astype(np.float32) * (255 / (2 ** bits - 1))).astype(np.uint8)
    raise DatasetError(path, f"unsupported pixel type {array.dtype}")


def integer_bit_depth(brightest: int) -> int:
    """The bit depth that integer pixels up to ``brightest`` are taken to have (at least 8)."""
    return max(8, int(brightest).bit_length())


def read_image(path: str, format: str = "BGR") -> np.ndarray:
    """HxWx3 uint8 image in ``format`` ("BGR", OpenCV's and the models' order, or "RGB"): grey made
    colour, alpha laid on white, deep pixels scaled (:func:`decode_image`); DatasetError naming the
    file when it cannot be read."""
    return pixels_to_image(decode_image(path), path, format)


def pixels_to_image(pixels: np.ndarray, path: str, format: str = "BGR", bits: Optional[int] = None
                    ) -> np.ndarray:
    """Decoded pixels (HxW or HxWxC with C 1 to 4, as :func:`decode_image` gives them: bool, non-negative
    integers or floats in [0, 1]) as :func:`read_image` returns an image: HxWx3 uint8, contiguous, in
    ``format``. ``bits``: the bit depth of integer pixels deeper than 8, when ``pixels`` is a part of an
    image whose brightest pixel is known."""
    if format not in ("BGR", "RGB"):
        raise ValueError(f"image format must be BGR or RGB, got {format!r}")
    image = _to_uint8(pixels, path, bits)
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels in (2, 4):  # grey or colour + alpha
        alpha = image[:, :, -1:]
        image = image[:, :, :-1]
        if alpha.min() < 255:
            weight = alpha.astype(np.float32) / 255
            image = np.round(image * weight + 255 * (1 - weight)).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] != 3:
        raise DatasetError(path, f"{channels} channels: expected grey, RGB or either with alpha")
    if format == "BGR":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def read_mask(path: str) -> np.ndarray:
    """HxW mask values as stored (no scaling; the file's pixel type, uint8 for 8-bit files): a colour
    mask gives the channel-wise maximum, alpha is ignored. DatasetError naming the file when it cannot
    be read."""
    mask = decode_image(path)
    if mask.ndim == 3:
        mask = mask[:, :, :3].max(axis=2) if mask.shape[2] >= 3 else mask[:, :, 0]
    return mask


def image_size(path: str) -> Tuple[int, int]:
    """(height, width) of an image, after decoding all of it once per file version (path, size and
    modification time), so that datasets refuse a truncated file when they are read, not mid-training."""
    stat = _stat(path)
    return _verified_size(str(path), stat.st_size, stat.st_mtime_ns)


# EXIF orientations that turn a picture by a quarter (transposed, rotated 90 or 270 degrees, transversed)
_QUARTER_TURNS = (5, 6, 7, 8)


def header_size(path: str) -> Optional[Tuple[int, int]]:
    """(height, width) that :func:`read_image` will give, from the file's header alone (EXIF orientation
    applied): to decide what to do with an image before paying for its decoding. None where the header
    does not tell for sure (TIFF, whose orientation tag is not applied; a file PIL cannot open): decode
    it then."""
    try:
        with open(path, "rb") as f:
            if f.read(4) in TIFF_MAGIC:
                return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                width, height = img.size
                if img.getexif().get(0x0112) in _QUARTER_TURNS:
                    width, height = height, width
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return height, width


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as err:
        raise DatasetError(path, f"cannot open image ({err.strerror or err})") from None


@functools.lru_cache(maxsize=65536)
def _verified_size(path: str, size: int, mtime_ns: int) -> Tuple[int, int]:
    height, width = read_image(path).shape[:2]
    return height, width


def record_crop(image: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    """The part of a record's image file that its annotations and ``height``/``width`` describe: the
    ``"crop"`` box ``[x0, y0, x1, y1]`` (file pixels) when the reader cut padding away, else all of it.
    ``image``: the file's HxW or HxWxC pixels, any dtype; the result is a view of it (no copy)."""
    if "crop" not in record:
        return image
    x0, y0, x1, y1 = record["crop"]
    return image[y0:y1, x0:x1]


def read_record_image(record: Mapping[str, Any]) -> np.ndarray:
    """HxWx3 uint8 BGR image of a dataset record (H, W its ``height``, ``width``), cropped as
    :func:`record_crop` says."""
    return record_crop(read_image(record["file_name"]), record)


def iter_images(paths: Sequence[str], failures: List[Failure], desc: str = "images",
                read: Callable[[str], Any] = read_image) -> Iterator[Tuple[str, Any]]:
    """``(path, read(path))`` of every readable file (by default its BGR image), with a progress bar;
    unreadable files are appended to ``failures`` and skipped, so one bad file in a folder of hundreds
    costs that file only."""
    for path in tqdm(paths, desc=desc, unit="image"):
        try:
            image = read(path)
        except DatasetError as err:
            logger.warning("%s", err)
            failures.append((str(path), err.problem))
            continue
        yield path, image
