"""Images read a region at a time, so that a slide region far larger than a camera frame is predicted
tile by tile in memory that follows the tile, not the image.

A TIFF's full-resolution level (one page, tiled or in strips, any compression tifffile decodes) is
read segment by segment through tifffile: a region costs the tiles or strips it touches, and a pyramid's
other levels are never read. (tifffile's region reads go through zarr, whose releases need numpy 2,
which Detectron2 does not take.) Every other image is decoded whole once, as :func:`read_image` does;
its pixels are then the memory that grows with the image. Either way a region's pixels are converted
exactly as :func:`read_image` converts the whole image.
"""
import math
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np
import tifffile

from .images import TIFF_MAGIC, integer_bit_depth, pixels_to_image, read_image, tifffile_warnings_raise
from .report import DatasetError

# Side of the blocks a preview is read and resized in, streaming through an image.
PREVIEW_BLOCK = 2048


class ImageRegions:
    """An image of ``height`` x ``width`` pixels that hands out regions, as BGR uint8 arrays."""

    def __init__(self, path: str, height: int, width: int):
        self.path = str(path)
        self.height = height
        self.width = width

    @property
    def shape(self) -> Tuple[int, int]:
        return self.height, self.width

    def close(self) -> None:
        """Releases the file (or pixels) behind the regions."""

    def __enter__(self) -> "ImageRegions":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows ``y0:y1`` and columns ``x0:x1`` (clipped to the image) as HxWx3 uint8 BGR, H and W the
        clipped extents."""
        raise NotImplementedError

    def preview(self, scale: float) -> np.ndarray:
        """The whole image resized by ``scale`` (at most 1), read and resized in blocks of
        PREVIEW_BLOCK pixels a side, so that memory follows the block and the preview, not the image
        (a striped TIFF's strips are decoded once per column of blocks). (h, w, 3) uint8 BGR, h =
        ``round(height * scale)`` and w likewise, at least 1; the whole image at ``scale`` >= 1."""
        if scale >= 1:
            return self.read(0, self.height, 0, self.width)
        rows = _preview_blocks(self.height, scale)
        cols = _preview_blocks(self.width, scale)
        preview = np.empty((rows[-1][1][1], cols[-1][1][1], 3), np.uint8)
        for (y0, y1), (r0, r1) in rows:
            for (x0, x1), (c0, c1) in cols:
                preview[r0:r1, c0:c1] = cv2.resize(self.read(y0, y1, x0, x1), (c1 - c0, r1 - r0),
                                                   interpolation=cv2.INTER_AREA)
        return preview


def _preview_blocks(length: int, scale: float) -> List[Tuple[Tuple[int, int], Tuple[int, int]]]:
    """``((start, end) in the image, (start, end) in the preview)`` of the blocks an axis of ``length``
    pixels is resized in: whole preview pixels, at most PREVIEW_BLOCK image pixels each (or one preview
    pixel), their image ends where a resize of the whole axis puts those preview pixels' edges."""
    total = max(1, round(length * scale))
    per_block = max(1, PREVIEW_BLOCK * total // length)
    edges = [*range(0, total, per_block), total]
    return [((round(a * length / total), round(b * length / total)), (a, b)) for a, b in zip(edges, edges[1:])]


class ArrayRegions(ImageRegions):
    """Regions of an image already in memory (HxWx3 uint8 BGR)."""

    def __init__(self, path: str, image: np.ndarray):
        """``image``: HxWx3 uint8 BGR, as :func:`read_image` gives it, held without a copy."""
        super().__init__(path, *image.shape[:2])
        self.image = image

    def close(self) -> None:
        self.image = np.zeros((0, 0, 3), np.uint8)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """As :meth:`ImageRegions.read`, but a view of the image, not a copy."""
        return self.image[max(0, y0):min(y1, self.height), max(0, x0):min(x1, self.width)]

    def preview(self, scale: float) -> np.ndarray:
        """As :meth:`ImageRegions.preview`, resized in one go; at ``scale`` >= 1 the image itself."""
        if scale >= 1:
            return self.image
        size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
        return cv2.resize(self.image, size, interpolation=cv2.INTER_AREA)


class TiffRegions(ImageRegions):
    """Regions of a one-page TIFF level, decoded from the segments (tiles or strips) they touch."""

    def __init__(self, path: str, page: "tifffile.TiffPage", bits: Optional[int]):
        super().__init__(path, page.imagelength, page.imagewidth)
        self.page = page
        self.bits = bits
        self.planar = page.planarconfig == 2 and page.samplesperpixel > 1
        self.samples = page.samplesperpixel
        tiled = page.is_tiled
        self.segment_rows = page.tilelength if tiled else page.rowsperstrip
        self.segment_cols = page.tilewidth if tiled else self.width
        self.grid = (math.ceil(self.height / self.segment_rows), math.ceil(self.width / self.segment_cols))

    def close(self) -> None:
        self.page.parent.close()

    def _segments(self, y0: int, y1: int, x0: int, x1: int) -> List[int]:
        rows = range(y0 // self.segment_rows, (y1 - 1) // self.segment_rows + 1)
        cols = range(x0 // self.segment_cols, (x1 - 1) // self.segment_cols + 1)
        per_plane = self.grid[0] * self.grid[1]
        planes = range(self.samples) if self.planar else range(1)
        return [s * per_plane + r * self.grid[1] + c for s in planes for r in rows for c in cols]

    def _decode(self, indices: List[int]) -> Iterator[Tuple[Optional[np.ndarray], Tuple[int, ...]]]:
        page = self.page
        keyframe = page.keyframe
        segments = page.parent.filehandle.read_segments(
            [page.dataoffsets[i] for i in indices], [page.databytecounts[i] for i in indices],
            indices=indices, flat=True, sort=True)
        with tifffile_warnings_raise(self.path):
            for data, index in segments:
                segment, position, _ = keyframe.decode(data, index, jpegtables=page.jpegtables,
                                                       jpegheader=keyframe.jpegheader,
                                                       _fullsize=keyframe.is_tiled)
                yield segment, position

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """As :meth:`ImageRegions.read`: a new HxWx3 uint8 BGR array, converted as :func:`read_image`
        converts the whole image (deep pixels scaled by the bit depth of the whole image's brightest
        pixel)."""
        y0, y1, x0, x1 = max(0, y0), min(y1, self.height), max(0, x0), min(x1, self.width)
        channels = self.samples
        out = np.zeros((y1 - y0, x1 - x0, channels), dtype=self.page.dtype)
        try:
            for segment, (sample, _, row, col, _) in self._decode(self._segments(y0, y1, x0, x1)):
                if segment is None:  # a segment the file leaves out (sparse TIFF): zeros
                    continue
                tile = segment[0]  # (rows, cols, contiguous samples)
                ty0, tx0 = max(y0, row), max(x0, col)
                ty1, tx1 = min(y1, row + tile.shape[0]), min(x1, col + tile.shape[1])
                if ty1 <= ty0 or tx1 <= tx0:
                    continue
                part = tile[ty0 - row:ty1 - row, tx0 - col:tx1 - col]
                target = out[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0]
                if self.planar:
                    target[..., sample] = part[..., 0]
                else:
                    target[...] = part
        except (OSError, ValueError, TypeError, KeyError, IndexError, RuntimeError) as err:
            raise DatasetError(self.path, f"unreadable, truncated or damaged TIFF ({err})") from None
        return pixels_to_image(out[..., 0] if channels == 1 else out, self.path, bits=self.bits)


def open_regions(path: str) -> ImageRegions:
    """The image at ``path``, for region reads: a TIFF whose full-resolution level is one page of one
    plane (slide-scanner exports, OME-TIFF pyramids) is read by segments; anything else is decoded
    whole once (:func:`read_image`). DatasetError naming the file when it cannot be read."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic in TIFF_MAGIC:
        regions = _tiff_regions(path)
        if regions is not None:
            return regions
    return ArrayRegions(path, read_image(path))


def _tiff_regions(path: str) -> Optional[TiffRegions]:
    """TiffRegions for a TIFF that segment reads cover (None: decode it whole instead). The file stays
    open for the regions' life; integer pixels deeper than 8 bits take one streaming pass for the
    brightest pixel, as :func:`read_image` scales the whole image by it."""
    try:
        with tifffile_warnings_raise(path):
            tif = tifffile.TiffFile(path)
    except DatasetError:
        raise
    except Exception:  # tifffile refuses it: read_image reports why, the same way as for other files
        return None
    series = tif.series[0] if tif.series else None
    level = (series.levels[0] if series is not None and series.levels else series)
    pages = list(level.pages) if level is not None else []
    page = pages[0] if len(pages) == 1 else None
    if (page is None or not isinstance(page, tifffile.TiffPage) or page.imagedepth != 1
            or page.samplesperpixel not in (1, 2, 3, 4) or page.dtype is None
            or not np.issubdtype(page.dtype, np.unsignedinteger)
            or not (page.photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
                    or (page.photometric == tifffile.PHOTOMETRIC.YCBCR  # JPEG tiles decode to RGB
                        and page.compression == tifffile.COMPRESSION.JPEG))):
        tif.close()
        return None
    bits = None
    if page.dtype.itemsize > 1:
        with tifffile_warnings_raise(path):
            brightest = max((int(segment.max()) for segment, _, _ in page.segments() if segment is not None),
                            default=0)
        bits = integer_bit_depth(brightest)
    return TiffRegions(path, page, bits)
