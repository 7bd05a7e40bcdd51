"""Is an image in colour? The shipped models learnt Jenner-Giemsa stained frames, where colour tells a
plasma cell's blue cytoplasm and purple nucleus from the pink-grey red cells; on a greyscale copy of a
frame they find few cells or none (none of the 12 of bundled frame 2011) without a word, so the tools
warn.

The measure is the 99th percentile of the HSV saturation ``(max - min) / max`` of the channels over a
small preview's lit pixels (max >= DARK): near-black pixels are left out, their saturation being noise
(the dark background of fluorescence images). GREYSCALE_MAX_SATURATION lies between stained frames
and greyscale copies with some cast or noise (docs/RESULTS.md, "Greyscale input").
"""
import logging
from typing import List

import numpy as np

from .regions import ImageRegions

logger = logging.getLogger(__name__)

PREVIEW_SIDE = 256  # longer side of the preview measured: a huge TIFF is read once, block by block
DARK = 64  # brightest channel below this: too dark for its saturation to mean anything
GREYSCALE_MAX_SATURATION = 0.35
GREYSCALE_WARNING = ("greyscale image: the models learnt colour (Jenner-Giemsa stained) images, so the cells "
                     "found and their counts are probably wrong")


def colour_saturation(image: ImageRegions) -> float:
    """99th percentile of the saturation of the lit pixels of a preview (0 for a greyscale image)."""
    preview = image.preview(min(1.0, PREVIEW_SIDE / max(image.shape))).astype(np.float32)
    brightest, darkest = preview.max(axis=2), preview.min(axis=2)
    lit = brightest >= DARK
    if not lit.any():
        return 0.0
    return float(np.percentile((brightest[lit] - darkest[lit]) / brightest[lit], 99))


def colour_warnings(image: ImageRegions) -> List[str]:
    """``[GREYSCALE_WARNING]`` for an image with (almost) no colour, logged with its file name; else
    ``[]``. The list is the per-image warnings the outputs (summary.csv, the case report) carry."""
    if colour_saturation(image) >= GREYSCALE_MAX_SATURATION:
        return []
    logger.warning("%s: %s", image.path, GREYSCALE_WARNING)
    return [GREYSCALE_WARNING]
