"""The colour check: a stained frame passes, its greyscale copy is said to be greyscale, by name."""
import logging

import cv2
import numpy as np
import tifffile

from detectron2_myeloma.data.colour import (GREYSCALE_MAX_SATURATION, GREYSCALE_WARNING, colour_saturation,
                                            colour_warnings)
from detectron2_myeloma.data.regions import ArrayRegions, open_regions


def test_a_greyscale_copy_of_a_real_frame_is_named_and_the_frame_is_not(segpc_mini, tmp_path, caplog):
    frame = cv2.imread(str(segpc_mini / "x" / "2011.jpg"))
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    path = tmp_path / "2011_grey.tif"  # one channel: read as three equal ones, a region at a time
    tifffile.imwrite(path, grey, tile=(256, 256))
    with caplog.at_level(logging.WARNING):
        assert colour_warnings(ArrayRegions("2011.jpg", frame)) == []
        assert caplog.text == ""
        with open_regions(str(path)) as regions:
            assert colour_warnings(regions) == [GREYSCALE_WARNING]
    assert caplog.text.count("WARNING") == 1 and f"{path}: {GREYSCALE_WARNING}" in caplog.text
    # the palest stained frame of the bundled sample is far from the threshold, a slight colour cast not
    palest = min(colour_saturation(ArrayRegions(p.name, cv2.imread(str(p)))) for p in (segpc_mini / "x").glob("*.jpg"))
    cast = np.clip(grey[..., None] * np.array([0.92, 1.0, 1.06]), 0, 255).astype(np.uint8)
    assert palest > GREYSCALE_MAX_SATURATION + 0.2 > colour_saturation(ArrayRegions("cast", cast)) + 0.2
