"""SegPC frames pasted on a padded canvas (segpc_lowres): the reader describes the frame only, and
every consumer of a record (the mapper, the classifier's crops) reads that part of the file."""
import cv2
import numpy as np
import pytest
import torch

from detectron2_myeloma import load_config
from detectron2_myeloma.data.images import read_record_image
from detectron2_myeloma.data.mapper import build_cell_mapper, original_image_mapper
from detectron2_myeloma.data.masks import rle_to_mask
from detectron2_myeloma.data.report import DatasetError
from detectron2_myeloma.data.datasets.segpc import frame_box, load_segpc
from testutils import write_segpc_cell

PAD = (208, 196, 207)  # BGR of the segpc_lowres canvas


@pytest.mark.parametrize("size, aspect, box", [
    ((512, 512), 4 / 3, (0, 64, 512, 448)),  # a 4:3 frame on a square: padding above and below
    ((300, 600), 4 / 3, (100, 0, 500, 300)),  # on a wide canvas: padding left and right
    ((384, 512), 4 / 3, (0, 0, 512, 384)),  # no padding at all
])
def test_frame_box(size, aspect, box):
    assert frame_box(size, aspect) == box


def padded_folder(root, spill_rows: int):
    """A 96x96 canvas holding a 4:3 frame in rows 12..84, one cell inside the frame, one at its top edge
    whose mask overshoots ``spill_rows`` rows into the padding."""
    (root / "x").mkdir(parents=True)
    (root / "y").mkdir()
    image = np.full((96, 96, 3), PAD, np.uint8)
    image[12:84] = np.random.default_rng(0).integers(0, 255, (72, 96, 3), np.uint8)
    cv2.imwrite(str(root / "x" / "a.png"), image)
    inside = write_segpc_cell(root / "y" / "a_1.png", (96, 96), (40, 50), 12, 5)
    edge = np.zeros((96, 96), np.uint8)
    edge[12 - spill_rows:30, 60:90] = 20
    cv2.imwrite(str(root / "y" / "a_2.png"), edge)
    return image, inside


def test_reader_crops_the_padding_and_shifts_the_masks(tmp_path):
    image, inside = padded_folder(tmp_path, spill_rows=0)
    record, = load_segpc(str(tmp_path), frame_aspect=4 / 3)
    assert record["crop"] == [0, 12, 96, 84] and (record["height"], record["width"]) == (72, 96)
    masks = [rle_to_mask(a["segmentation"]) for a in record["annotations"]]
    assert masks[0].shape == (72, 96) and np.array_equal(masks[0], inside[12:84] > 0)
    assert np.array_equal(read_record_image(record), image[12:84])


def test_a_slight_spill_into_the_padding_is_cut_a_large_one_is_refused(tmp_path):
    padded_folder(tmp_path / "slight", spill_rows=0)
    edge = cv2.imread(str(tmp_path / "slight" / "y" / "a_2.png"), cv2.IMREAD_GRAYSCALE)
    edge[11, 60:70] = 20  # 10 of ~550 pixels above the frame
    cv2.imwrite(str(tmp_path / "slight" / "y" / "a_2.png"), edge)
    record, = load_segpc(str(tmp_path / "slight"), frame_aspect=4 / 3)
    assert record["annotations"][1]["area"] == 18 * 30
    padded_folder(tmp_path / "large", spill_rows=6)
    with pytest.raises(DatasetError, match=r"a_2.png: 180 of the cell's 720 pixels lie in the padding"):
        load_segpc(str(tmp_path / "large"), frame_aspect=4 / 3)


def test_mapper_reads_the_frame_and_keeps_masks_on_it(tmp_path):
    image, inside = padded_folder(tmp_path, spill_rows=0)
    record, = load_segpc(str(tmp_path), frame_aspect=4 / 3)
    cfg = load_config("configs/SegPC/mask_rcnn_lite2_fpn.yaml", [
        "INPUT.MIN_SIZE_TEST", 72, "INPUT.MAX_SIZE_TEST", 96, "INPUT.MIN_SIZE_TRAIN", (72,),
        "INPUT.MAX_SIZE_TRAIN", 96, "INPUT.CROP.ENABLED", False, "INPUT.CELL_AUG.HFLIP", False,
        "INPUT.CELL_AUG.VFLIP", False, "INPUT.CELL_AUG.ROT90", False, "INPUT.CELL_AUG.BRIGHTNESS", 0.0,
        "INPUT.CELL_AUG.CONTRAST", 0.0, "INPUT.CELL_AUG.SATURATION", 0.0, "INPUT.CELL_AUG.HUE", 0.0])
    for is_train in (False, True):
        sample = build_cell_mapper(cfg, is_train)(record)
        frame_rgb = image[12:84, :, ::-1].transpose(2, 0, 1)  # the config's INPUT.FORMAT is RGB
        assert torch.equal(sample["image"], torch.from_numpy(np.ascontiguousarray(frame_rgb)))
    masks = sample["instances"].gt_masks.tensor.numpy()
    assert np.array_equal(masks[0], inside[12:84] > 0)
    evaluated = original_image_mapper(record)  # evaluation: the frame at the file's resolution, BGR
    assert np.array_equal(evaluated["image"], image[12:84]) and "annotations" not in evaluated
