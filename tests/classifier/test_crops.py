"""Crop geometry is exact (borders, corners, tiny boxes, margins), every crop is centred on its cell and
padded outside the image, and so is the cut (that the hook's crops are the saved training crops:
test_hook.py)."""
import numpy as np
import pytest

from detectron2_myeloma.classifier.crops import crop_and_resize, crop_side, pad_colour, square_crop_box
from detectron2_myeloma.utils.errors import InputError

HW = (100, 200)  # height, width


@pytest.mark.parametrize("box, margin, expected", [
    ((50, 30, 90, 60), 0.25, (40, 15, 100, 75)),        # inside: side 40 * 1.5, centred
    ((0, 40, 20, 60), 0.5, (-10, 30, 30, 70)),           # left border: centred, leaves the image
    ((190, 40, 200, 60), 0.5, (175, 30, 215, 70)),       # right border
    ((100, 0, 120, 10), 0.0, (100, -5, 120, 15)),        # top border, no margin
    ((100, 95, 120, 100), 0.0, (100, 88, 120, 108)),     # bottom border (centre 97.5 - 10 rounds up)
    ((0, 0, 10, 10), 1.0, (-10, -10, 20, 20)),           # top-left corner
    ((195, 0, 200, 8), 0.5, (190, -4, 206, 12)),         # top-right corner
    ((0, 92, 6, 100), 0.5, (-5, 88, 11, 104)),           # bottom-left corner
    ((190, 90, 200, 100), 1.0, (180, 80, 210, 110)),     # bottom-right corner
    ((10.2, 20.2, 10.4, 20.4), 0.15, (10, 20, 11, 21)),  # tiny box: side at least 1
    ((5, 5, 5, 5), 0.15, (5, 5, 6, 6)),                  # empty box
    ((20, 10, 180, 90), 0.25, (-20, -70, 220, 170)),     # longer than both sides: centred on the box
    ((0, 0, 200, 100), 0.0, (0, -50, 200, 150)),         # the whole image: fits across, not down
    ((200, 100, 200, 100), 0.0, (199, 99, 200, 100)),    # degenerate, on the far border: keeps its pixel
    ((-40, 30, -20, 50), 0.0, (-9, 30, 11, 50)),         # beyond the border: held half a pixel inside
])
def test_square_crop_box_exact(box, margin, expected):
    assert square_crop_box(box, HW, margin) == expected


@pytest.mark.parametrize("margin, side", [(0.0, 100), (0.15, 130), (0.25, 150), (0.5, 200)])
def test_margin_sets_the_side(margin, side):
    x0, y0, x1, y1 = square_crop_box((300, 300, 400, 350), (1000, 1000), margin)
    assert x1 - x0 == y1 - y0 == side
    assert (x0 + x1) / 2 == 350 and (y0 + y1) / 2 == 325  # centred on the box


def test_square_is_centred_on_the_box_and_contains_it():
    rng = np.random.default_rng(0)
    height, width = 300, 400
    for _ in range(2000):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        box = (x0, y0, rng.uniform(x0, width), rng.uniform(y0, height))
        margin = float(rng.choice([0.0, 0.1, 0.15, 0.4]))
        side = float(rng.choice([0, 30, 160, 500]))
        cx0, cy0, cx1, cy1 = square_crop_box(box, (height, width), margin, side or None)
        assert cy1 - cy0 == cx1 - cx0 >= 1
        for lo, hi, start, end, length in ((box[0], box[2], cx0, cx1, width), (box[1], box[3], cy0, cy1, height)):
            centre = min(max((lo + hi) / 2, 0.5), length - 0.5)  # a real cell's centre is never moved
            assert abs((start + end) / 2 - centre) <= 0.5
            assert start < length and end > 0  # at least one pixel inside the image
            if not side:  # box-relative: the box is inside the square, up to rounding (< 1 px)
                assert start < lo + 1 and hi < end + 1


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
    image = np.full((*HW, 3), (215, 200, 210), dtype=np.uint8)  # light slide, BGR
    image[:40] = (90, 40, 120)  # stained rows: the darker part, not the background
    crop = crop_and_resize(image, (0, 0, 200, 100), 0.0, 200)  # square (0, -50, 200, 150)
    assert crop.shape == (200, 200, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop[50:150], image)
    assert (crop[:50] == (215, 200, 210)).all() and (crop[150:] == (215, 200, 210)).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_pad_colour_is_the_median_of_the_brighter_half(dtype):
    """Per channel, over the pixels at least as bright (mean of channels) as the median pixel; the same
    colour whatever the channel order, so BGR training crops and RGB hook crops pad alike."""
    def expected(flat):
        brightness = flat.sum(axis=1)
        value = np.median(flat[brightness >= np.median(brightness)], axis=0)
        return tuple(np.floor(value + 0.5) if dtype == np.uint8 else value)

    pixels = np.random.default_rng(4).integers(0, 256, (30, 40, 3)).astype(dtype)
    flat = pixels.reshape(-1, 3).astype(float)
    assert pad_colour(pixels) == expected(flat)
    assert pad_colour(pixels[..., ::-1]) == expected(flat)[::-1]
    assert pad_colour(pixels[..., 0]) == expected(flat[:, :1])  # one channel
    with pytest.raises(ValueError, match="inside the image"):
        pad_colour(pixels[:0])


def test_neighbours_near_a_corner_get_their_own_centred_crops():
    """Issue 30: two neighbouring cells near a corner, cut at one physical scale (2 cell diameters of
    80 px). Shifting each square inside the image gave both the one window at the corner; centred, each
    crop has its own cell's centre at its centre (within a pixel), and the part outside the image is the
    slide's background colour."""
    background = (212, 198, 205)  # BGR
    image = np.full((300, 400, 3), background, dtype=np.uint8)
    rng = np.random.default_rng(5)
    boxes = [(10, 10, 51, 51), (46, 30, 87, 71)]  # overlapping neighbours; centre pixels (30, 30), (66, 50)
    for n, (x0, y0, x1, y1) in enumerate(boxes):  # dark textured cells, their centre pixel marked
        image[y0:y1, x0:x1] = rng.integers(40, 120, (y1 - y0, x1 - x0, 3))
    markers = [(0, 0, 255), (0, 255, 0)]
    for (x0, y0, x1, y1), marker in zip(boxes, markers):
        image[(y0 + y1) // 2, (x0 + x1) // 2] = marker
    side = crop_side(2.0, 80.0)
    crops = [crop_and_resize(image, box, 0.15, 160, side=side) for box in boxes]  # 160 px: no resampling
    assert not np.array_equal(crops[0], crops[1])
    for box, crop, marker in zip(boxes, crops, markers):
        (row,), (col,) = np.nonzero((crop == marker).all(axis=2))
        assert abs(row + 0.5 - 80) <= 1 and abs(col + 0.5 - 80) <= 1  # the cell's centre at the crop's
        x0, y0, x1, y1 = square_crop_box(box, image.shape[:2], 0.15, side)
        assert x0 < 0 and y0 < 0  # the square leaves the image at the corner...
        outside = np.ones((160, 160), bool)
        outside[-y0:, -x0:] = False
        assert (crop[outside] == background).all()  # ...and that part is the background, flat
        np.testing.assert_array_equal(crop[-y0:, -x0:], image[:y1, :x1])  # the rest is the image, unmoved


def test_grayscale_keeps_two_dimensions():
    image = np.arange(100 * 200, dtype=np.float32).reshape(HW)
    assert crop_and_resize(image, (10, 10, 50, 50), 0.1, 16).shape == (16, 16)


@pytest.mark.parametrize("box", [(50, 30, 90, 60), (95, 45, 105, 55), (0, 0, 120, 90)])
def test_a_fixed_side_ignores_the_box_size(box):
    """Physical-scale crops: the side is the given one whatever the box, centred on it (even where that
    leaves the image)."""
    x0, y0, x1, y1 = square_crop_box(box, HW, margin=0.5, side=60)
    assert (x1 - x0, y1 - y0) == (60, 60)
    assert abs((x0 + x1) / 2 - (box[0] + box[2]) / 2) <= 0.5 and abs((y0 + y1) / 2 - (box[1] + box[3]) / 2) <= 0.5


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
