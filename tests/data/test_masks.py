"""Masks <-> COCO RLE."""
import numpy as np

from detectron2_myeloma.data.masks import mask_to_rle, rle_to_mask


def test_a_segpc_mask_encodes_its_nonzero_pixels():
    """A 0/20/40 mask, cytoplasm (20) touching nucleus (40): pycocotools alone would start a run at the
    change from 20 to 40 and give back a different mask."""
    mask = np.zeros((30, 40), np.uint8)
    mask[5:25, 5:35] = 20
    mask[10:20, 12:28] = 40
    decoded = rle_to_mask(mask_to_rle(mask))
    assert decoded.dtype == bool and np.array_equal(decoded, mask != 0)
    assert np.array_equal(rle_to_mask(mask_to_rle(mask != 0)), mask != 0)
