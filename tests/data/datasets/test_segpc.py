"""SegPC-2021 reader: real bundled masks come back exactly, and every kind of bad input is caught."""
import cv2
import numpy as np
import pytest

from detectron2_myeloma.data.masks import rle_to_mask
from detectron2_myeloma.data.report import MASK_OF_SKIPPED_IMAGE, ConversionReport, DatasetError
from detectron2_myeloma.data.datasets.segpc import load_segpc
from detectron2_myeloma.data.segpc_format import read_segpc_mask

from testutils import write_segpc_cell


def test_bundled_sample_masks_are_exact(segpc_mini):
    dicts = load_segpc(str(segpc_mini), categories="cell")
    assert len(dicts) == 14
    assert sum(len(d["annotations"]) for d in dicts) == 90
    record = next(d for d in dicts if d["image_id"] == "1997")
    assert (record["height"], record["width"]) == (1536, 2040)
    for ann in record["annotations"]:
        source = read_segpc_mask(str(segpc_mini / "y" / f"{ann['segpc_instance']}.png"))
        np.testing.assert_array_equal(rle_to_mask(ann["segmentation"]), source > 0)
        np.testing.assert_array_equal(rle_to_mask(ann["nucleus"]), source == 40)
        ys, xs = np.nonzero(source)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["area"] == (source > 0).sum()


def test_categories_both_pairs_each_cell_with_its_nucleus(tiny_segpc):
    dicts = load_segpc(str(tiny_segpc), categories="both")
    anns = dicts[0]["annotations"]
    assert [a["category_id"] for a in anns] == [0, 1, 0, 1]
    cell, nucleus = anns[0], anns[1]
    assert cell["segpc_instance"] == nucleus["segpc_instance"] == "a_1"
    np.testing.assert_array_equal(rle_to_mask(cell["nucleus"]), rle_to_mask(nucleus["segmentation"]))
    assert rle_to_mask(nucleus["segmentation"]).sum() < rle_to_mask(cell["segmentation"]).sum()
    only_nuclei = load_segpc(str(tiny_segpc), categories="nucleus")
    assert [a["category_id"] for a in only_nuclei[0]["annotations"]] == [0, 0]


def test_image_without_masks_and_test_split(tiny_segpc):
    dicts = {d["image_id"]: d for d in load_segpc(str(tiny_segpc))}
    assert len(dicts["c"]["annotations"]) == 0
    for path in (tiny_segpc / "y").iterdir():
        path.unlink()
    (tiny_segpc / "y").rmdir()
    test_split = load_segpc(str(tiny_segpc))
    assert [d["image_id"] for d in test_split] == ["a", "b", "c"]
    assert all(d["annotations"] == [] for d in test_split)


def test_image_ids_select_a_fixed_split(tiny_segpc):
    assert [d["image_id"] for d in load_segpc(str(tiny_segpc), image_ids=["b"])] == ["b"]
    with pytest.raises(DatasetError, match="not found: z"):
        load_segpc(str(tiny_segpc), image_ids=["z"])


def test_three_channel_and_jpeg_masks(tiny_segpc):
    mask = cv2.imread(str(tiny_segpc / "y" / "b_1.png"), cv2.IMREAD_GRAYSCALE)
    rgb = np.zeros(mask.shape + (3,), np.uint8)
    rgb[..., 2] = mask  # values in one channel only
    (tiny_segpc / "y" / "b_1.png").unlink()
    cv2.imwrite(str(tiny_segpc / "y" / "b_1.bmp"), rgb)
    np.testing.assert_array_equal(read_segpc_mask(str(tiny_segpc / "y" / "b_1.bmp")), mask)
    cv2.imwrite(str(tiny_segpc / "y" / "jpeg_1.jpg"), mask, [cv2.IMWRITE_JPEG_QUALITY, 90])
    snapped = read_segpc_mask(str(tiny_segpc / "y" / "jpeg_1.jpg"))
    assert set(np.unique(snapped)) <= {0, 20, 40}
    assert (snapped != mask).mean() < 0.01


# Each bad input: how to make it, and what the error must say.
def _truncated_image(root):
    data = (root / "x" / "a.png").read_bytes()
    (root / "x" / "a.png").write_bytes(data[: len(data) // 3])
    return root / "x" / "a.png", "truncated"


def _mask_size(root):
    write_segpc_cell(root / "y" / "a_3.png", (60, 80), (20, 20), 10, 4)
    return root / "y" / "a_3.png", "but its image is 160x120"


def _mask_values(root):
    mask = np.zeros((120, 160), np.uint8)
    mask[10:20, 10:20] = 255
    cv2.imwrite(str(root / "y" / "a_3.png"), mask)
    return root / "y" / "a_3.png", "found 255"


def _empty_mask(root):
    cv2.imwrite(str(root / "y" / "a_3.png"), np.zeros((120, 160), np.uint8))
    return root / "y" / "a_3.png", "no foreground"


def _orphan_mask(root):
    write_segpc_cell(root / "y" / "zz_1.png", (120, 160), (20, 20), 10, 4)
    return root / "y" / "zz_1.png", "mask has no image 'zz'"


def _duplicate_id(root):
    cv2.imwrite(str(root / "x" / "b.jpg"), np.zeros((120, 160, 3), np.uint8))
    return root / "x" / "b.png", "duplicate id 'b'"


def _bad_mask_name(root):
    write_segpc_cell(root / "y" / "a-1.png", (120, 160), (20, 20), 10, 4)
    return root / "y" / "a-1.png", "is not '<image id>_<k>"


BAD_INPUTS = [_truncated_image, _mask_size, _mask_values, _empty_mask, _orphan_mask, _duplicate_id,
              _bad_mask_name]


@pytest.mark.parametrize("make_bad", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_names_the_file(tiny_segpc, make_bad):
    path, message = make_bad(tiny_segpc)
    with pytest.raises(DatasetError) as err:
        load_segpc(str(tiny_segpc))
    assert str(err.value).startswith(str(path)), str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize("make_bad", BAD_INPUTS, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_skipped_when_asked(tiny_segpc, make_bad):
    path, _ = make_bad(tiny_segpc)
    report = ConversionReport()
    dicts = load_segpc(str(tiny_segpc), strict=False, report=report)
    assert [where for where, reason in report.skipped if reason != MASK_OF_SKIPPED_IMAGE] == [str(path)]
    # The good cells are all still there.
    good = {a["segpc_instance"] for d in dicts for a in d["annotations"]}
    assert {"b_1"} <= good
    assert report.instances == sum(len(d["annotations"]) for d in dicts)


def test_skipped_image_counts_its_masks(tiny_segpc):
    """A truncated image's masks are not dropped silently: each is counted as skipped."""
    _truncated_image(tiny_segpc)
    report = ConversionReport()
    dicts = load_segpc(str(tiny_segpc), strict=False, report=report)
    assert [d["image_id"] for d in dicts] == ["b", "c"]
    assert [where for where, reason in report.skipped if reason == MASK_OF_SKIPPED_IMAGE] == [
        str(tiny_segpc / "y" / "a_1.png"), str(tiny_segpc / "y" / "a_2.png")]
    assert "3 skipped" in report.summary() and "skipped 2 x mask of a skipped image" in report.summary()
