"""Cell augmentations: exact 90-degree rotations, colour jitter in torchvision's hue unit that leaves the
geometry alone, and a mapped training sample whose boxes fit its masks."""
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from torchvision.transforms import v2

from detectron2_myeloma import add_myeloma_config, load_config
from detectron2_myeloma.data.mapper import build_cell_augmentations, build_cell_mapper
from detectron2_myeloma.data.datasets.segpc import load_segpc
from detectron2_myeloma.data.transforms import RandomColorJitter, Rot90Transform


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rot90_maps_masks_boxes_and_inverse_exactly(k):
    h, w = 5, 8
    mask = np.zeros((h, w), np.uint8)
    mask[1:3, 2:7] = 1  # box x 2..7, y 1..3 in pixel-edge coordinates
    t = Rot90Transform(h, w, k)
    rotated = t.apply_segmentation(mask)
    np.testing.assert_array_equal(rotated, np.rot90(mask, k))
    ys, xs = np.nonzero(rotated)
    expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    np.testing.assert_allclose(t.apply_box(np.array([[2, 1, 7, 3]], float))[0], expected)
    np.testing.assert_array_equal(t.inverse().apply_segmentation(rotated), mask)


def hue_shift(hue: float, image_format: str):
    """The detector's jitter with hue shifted by exactly ``hue`` of the circle, nothing else."""
    return RandomColorJitter(v2.ColorJitter(hue=(hue, hue)), image_format).get_transform(None)


def test_hue_shift_changes_colour_not_geometry():
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0] = 200  # pure red
    t = hue_shift(30 / 180, "RGB")  # 30 OpenCV hue units: red turns yellow
    out = t.apply_image(img)
    assert out.shape == img.shape and not np.array_equal(out, img)
    np.testing.assert_allclose(out.reshape(-1, 3), [[200, 200, 0]] * 16, atol=1)
    np.testing.assert_array_equal(hue_shift(30 / 180, "BGR").apply_image(img[..., ::-1]), out[..., ::-1])
    assert np.array_equal(hue_shift(0, "RGB").apply_image(img), img)
    coords, mask = np.array([[1.5, 2.5]]), np.eye(4, dtype=np.uint8)
    assert np.array_equal(t.apply_coords(coords), coords) and np.array_equal(t.apply_segmentation(mask), mask)


@pytest.mark.parametrize("hue", [-0.1, 0.6, 4.0])  # 4.0: the old OpenCV-unit default
def test_hue_outside_the_circle_is_refused(hue):
    cfg = get_cfg()
    add_myeloma_config(cfg)
    cfg.INPUT.CELL_AUG.HUE = hue
    message = r"INPUT.CELL_AUG.HUE must be a fraction of the hue circle in \[0, 0.5\]"
    with pytest.raises(ValueError, match=message):
        build_cell_augmentations(cfg, is_train=True)


def test_training_sample_from_bundled_image():
    cfg = load_config("configs/SegPC/rmask_rcnn_lite2_fpn.yaml")
    mapper = build_cell_mapper(cfg, is_train=True)
    record = DatasetCatalog.get("segpc_mini_train")[0]
    np.random.seed(0)
    for _ in range(3):
        sample = mapper(dict(record))
        image, inst = sample["image"], sample["instances"]
        crop = tuple(cfg.INPUT.CROP.SIZE)
        assert tuple(image.shape) == (3, *crop)
        assert len(inst) > 0 and inst.gt_masks.tensor.shape[1:] == crop
        # Boxes are recomputed from the cropped masks: each box is its mask's tight box.
        for box, mask in zip(inst.gt_boxes.tensor, inst.gt_masks.tensor):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert torch.allclose(box, torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                                    dtype=box.dtype))


def test_training_images_are_resized_to_the_target_cell_diameter(tiny_segpc):
    record = load_segpc(str(tiny_segpc))[0]  # 120x160, cells of radius 20 and 25
    cfg = load_config("configs/SegPC/mask_rcnn_lite2_fpn.yaml", [
        "INPUT.CELL_DIAMETER.TRAIN", (40.0,), "INPUT.CROP.ENABLED", False, "INPUT.CELL_AUG.ROT90", False])
    with pytest.raises(ValueError, match="a.png: INPUT.CELL_DIAMETER resizes by cell size but the record has no"):
        build_cell_mapper(cfg, is_train=True)(record)
    sample = build_cell_mapper(cfg, is_train=True)({**record, "cell_diameter": 20.0})  # 2x
    assert tuple(sample["image"].shape) == (3, 240, 320)
    areas = sample["instances"].gt_masks.tensor.sum(dim=(1, 2)).float()
    expected = torch.tensor([a["area"] for a in record["annotations"]]) * 4
    torch.testing.assert_close(areas, expected, rtol=0.03, atol=0)
    test_cfg = load_config("configs/SegPC/mask_rcnn_lite2_fpn.yaml", ["INPUT.CELL_DIAMETER.TEST", 10.0])
    assert build_cell_augmentations(test_cfg, is_train=False) == []
    assert tuple(build_cell_mapper(test_cfg, is_train=False)({**record, "cell_diameter": 20.0})["image"].shape) \
        == (3, 60, 80)


def test_nuclei_follow_their_cells_through_every_augmentation():
    """gt_nuclei (MODEL.ROI_MASK_HEAD.NUCLEUS) are cropped, flipped, turned and resized with the cells:
    each lies inside its own cell, and about as much of it as of the cell survives the crop."""
    cfg = load_config("configs/SegPC/rmask_rcnn_lite2_fpn_d80_point_nucleus.yaml")
    mapper = build_cell_mapper(cfg, is_train=True)
    record = DatasetCatalog.get("segpc_mini_train")[0]
    np.random.seed(0)
    nucleus_pixels, ratios = 0, []
    for _ in range(4):
        inst = mapper(dict(record))["instances"]
        cells, nuclei = inst.gt_masks.tensor, inst.gt_nuclei.tensor
        assert nuclei.shape == cells.shape and len(cells) > 0
        assert not (nuclei & ~cells).any()
        nucleus_pixels += int(nuclei.sum())
        ratios += [float(n.sum() / c.sum()) for c, n in zip(cells, nuclei) if c.sum() > 2000]
    assert nucleus_pixels > 0
    assert 0.25 < np.median(ratios) < 0.7  # SegPC's nucleus / cell areas: about 0.4
    without = {**record, "annotations": [{k: v for k, v in a.items() if k != "nucleus"} for a in record["annotations"]]}
    with pytest.raises(ValueError, match="NUCLEUS is on but no annotation of this record has a nucleus"):
        mapper(without)
