"""Crop geometry is exact (borders, corners, tiny boxes, margins), and so is the cut (that the hook's
crops are the saved training crops: test_hook.py)."""
import numpy as np
import pytest

from detectron2_myeloma.classifier.crops import crop_and_resize, crop_side, square_crop_box
from detectron2_myeloma.utils.errors import InputError

HW = (100, 200)  # height, width


@pytest.mark.parametrize("box, margin, expected", [
    ((50, 30, 90, 60), 0.25, (40, 15, 100, 75)),     # inside: side 40 * 1.5, centred
    ((0, 40, 20, 60), 0.5, (0, 30, 40, 70)),          # left border: shifted right
    ((190, 40, 200, 60), 0.5, (160, 30, 200, 70)),    # right border: shifted left
    ((100, 0, 120, 10), 0.0, (100, 0, 120, 20)),      # top border, no margin
    ((100, 95, 120, 100), 0.0, (100, 80, 120, 100)),  # bottom border (centre 87.5 rounds up, then shifted)
    ((0, 0, 10, 10), 1.0, (0, 0, 30, 30)),            # top-left corner
    ((195, 0, 200, 8), 0.5, (184, 0, 200, 16)),       # top-right corner
    ((0, 92, 6, 100), 0.5, (0, 84, 16, 100)),         # bottom-left corner
    ((190, 90, 200, 100), 1.0, (170, 70, 200, 100)),  # bottom-right corner
    ((10.2, 20.2, 10.4, 20.4), 0.15, (10, 20, 11, 21)),  # tiny box: side at least 1
    ((5, 5, 5, 5), 0.15, (5, 5, 6, 6)),               # empty box
    ((20, 10, 180, 90), 0.25, (-20, -70, 220, 170)),  # longer than both sides: centred on the image
    ((0, 0, 200, 100), 0.0, (0, -50, 200, 150)),      # the whole image: fits across, not down
])
def test_square_crop_box_exact(box, margin, expected):
    assert square_crop_box(box, HW, margin) == expected


@pytest.mark.parametrize("margin, side", [(0.0, 100), (0.15, 130), (0.25, 150), (0.5, 200)])
def test_margin_sets_the_side(margin, side):
    x0, y0, x1, y1 = square_crop_box((300, 300, 400, 350), (1000, 1000), margin)
    assert x1 - x0 == y1 - y0 == side
    assert (x0 + x1) / 2 == 350 and (y0 + y1) / 2 == 325  # centred on the box


def test_square_contains_box_and_stays_inside():
    rng = np.random.default_rng(0)
    height, width = 300, 400
    for _ in range(2000):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        box = (x0, y0, rng.uniform(x0, width), rng.uniform(y0, height))
        margin = float(rng.choice([0.0, 0.1, 0.15, 0.4]))
        cx0, cy0, cx1, cy1 = square_crop_box(box, (height, width), margin)
        side = cx1 - cx0
        assert cy1 - cy0 == side >= 1
        if side <= height:
            assert 0 <= cx0 and cx1 <= width and 0 <= cy0 and cy1 <= height
            # the box is inside the square, up to the rounding of side and centre (< 1 px)
            assert cx0 < box[0] + 1 and box[2] < cx1 + 1 and cy0 < box[1] + 1 and box[3] < cy1 + 1
            if margin * max(box[2] - box[0], box[3] - box[1]) >= 1:  # a margin of 1 px absorbs it
                assert cx0 <= box[0] and box[2] <= cx1 and cy0 <= box[1] and box[3] <= cy1


def test_negative_margin_rejected():
    with pytest.raises(ValueError, match="margin"):
        square_crop_box((0, 0, 10, 10), HW, -0.1)


def test_crop_without_resampling_is_the_region():
    image = np.random.default_rng(1).integers(0, 256, (*HW, 3), dtype=np.uint8)
    crop = crop_and_resize(image, (50, 30, 90, 60), 0.25, 60)  # square (40, 15, 100, 75), side 60
    np.testing.assert_array_equal(crop, image[15:75, 40:100])


def test_integer_shrink_averages_blocks():
    image = np.random.default_rng(2).integers(0, 256, (*HW, 3), dtype=np.uint8)
    crop = crop_and_resize(image, (50, 30, 90, 60), 0.25, 30)
    blocks = image[15:75, 40:100].astype(float).reshape(30, 2, 30, 2, 3).mean(axis=(1, 3))
    assert np.abs(crop - blocks).max() <= 0.5


def test_padding_only_where_the_square_leaves_the_image():
    image = np.full((*HW, 3), 200, dtype=np.uint8)
    crop = crop_and_resize(image, (0, 0, 200, 100), 0.0, 200, pad_value=7)  # square (0, -50, 200, 150)
    assert crop.shape == (200, 200, 3) and crop.dtype == np.uint8
    assert (crop[:50] == 7).all() and (crop[150:] == 7).all() and (crop[50:150] == 200).all()


def test_grayscale_keeps_two_dimensions():
    image = np.arange(100 * 200, dtype=np.float32).reshape(HW)
    assert crop_and_resize(image, (10, 10, 50, 50), 0.1, 16).shape == (16, 16)


@pytest.mark.parametrize("box", [(50, 30, 90, 60), (95, 45, 105, 55), (0, 0, 120, 90)])
def test_a_fixed_side_ignores_the_box_size(box):
    """Physical-scale crops: the side is the given one whatever the box, centred on it (shifted inside)."""
    x0, y0, x1, y1 = square_crop_box(box, HW, margin=0.5, side=60)
    assert (x1 - x0, y1 - y0) == (60, 60)
    assert 0 <= x0 and x1 <= HW[1] and 0 <= y0 and y1 <= HW[0]
    assert abs((x0 + x1) / 2 - min(max((box[0] + box[2]) / 2, 30), HW[1] - 30)) <= 0.5


def test_crops_of_one_physical_scale_look_alike_at_any_resolution():
    """A cell and its 4x reduced copy, cut at 2 cell diameters of their images, give the same crop: the
    classifier sees reduced and full-size frames alike; box-relative crops would too, but lose the size
    difference between a small and a large cell, which physical-scale crops keep."""
    rng = np.random.default_rng(0)
    full = np.kron(rng.integers(0, 256, (100, 100, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 400x400
    reduced = full[::4, ::4]
    big = crop_and_resize(full, (100, 100, 300, 300), 0.0, 32, side=crop_side(2.0, 160))
    small = crop_and_resize(reduced, (25, 25, 75, 75), 0.0, 32, side=crop_side(2.0, 40))
    np.testing.assert_array_equal(big, small)
    assert crop_side(0.0, None) is None  # box-relative crops need no diameter
    with pytest.raises(InputError, match="median cell diameter is not known.*--cell-diameter"):
        crop_side(2.0, None)
