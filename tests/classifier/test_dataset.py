"""Crop folder: splits never share an image, the manifest and balance agree with the files, the files
are the crop function's output, and a project detector gives hard negatives end to end."""
import json

import cv2
import numpy as np
import pytest
import torch

from detectron2_myeloma.utils.errors import InputError
from detectron2_myeloma.classifier.crops import crop_and_resize
from detectron2_myeloma.classifier.dataset import (CropDataset, build_crop_dataset, read_manifest,
                                                   split_by_image)
from detectron2_myeloma.classifier.labels import CLASS_NAMES
from detectron2_myeloma.classifier.negatives import detector_negatives


def test_split_by_image_is_deterministic_and_disjoint():
    records = [{"image_id": str(i), "file_name": f"{i}.jpg"} for i in range(20)]
    train, val = split_by_image(records, 0.25)
    assert len(val) == 5 and len(train) == 15
    assert {r["image_id"] for r in train}.isdisjoint(r["image_id"] for r in val)
    assert split_by_image(records[::-1], 0.25)[1] == sorted(val, key=lambda r: -int(r["image_id"]))
    assert len(split_by_image(records[:2], 0.1)[1]) == 1  # at least one val image
    with pytest.raises(ValueError):
        split_by_image(records, 1.0)


def test_manifest_splits_share_no_image(small_crops):
    rows = read_manifest(str(small_crops))
    train = {r["source_image"] for r in rows if r["split"] == "train"}
    val = {r["source_image"] for r in rows if r["split"] == "val"}
    assert train and val and train.isdisjoint(val)
    assert {r["image_id"] for r in rows} == {"1991", "2042", "2048"}


def test_manifest_files_and_balance_agree(small_crops):
    rows = read_manifest(str(small_crops))
    balance = json.loads((small_crops / "balance.json").read_text())
    for split in ("train", "val"):
        mine = [r for r in rows if r["split"] == split]
        assert balance[split]["crops"] == len(mine)
        for name in CLASS_NAMES:
            files = sorted(f"{split}/{name}/{p.name}" for p in (small_crops / split / name).glob("*.png"))
            assert files == sorted(r["path"] for r in mine if r["label"] == name)
            assert balance[split]["labels"][name] == len(files) > 0
    # positives are exactly the annotated cells: 1991 has 12, 2042 has 9, 2048 has 8
    assert balance["train"]["labels"]["myeloma"] == 21 and balance["val"]["labels"]["myeloma"] == 8
    assert all(r["source"] == ("annotation" if r["label"] == "myeloma" else "stain_heuristic") for r in rows)
    params = json.loads((small_crops / "crops.json").read_text())
    assert params["size"] == 64 and params["margin"] == 0.15


def test_crops_are_the_crop_function_output(small_crops, segpc_records):
    index, row = next((i, r) for i, r in enumerate(read_manifest(str(small_crops), "val"))
                      if r["label"] == "myeloma")
    image = cv2.imread(segpc_records[row["image_id"]]["file_name"])
    box = [float(row[k]) for k in ("x0", "y0", "x1", "y1")]  # an annotated box: integers, stored exactly
    saved = cv2.imread(str(small_crops / row["path"]))
    np.testing.assert_array_equal(saved, crop_and_resize(image, box, 0.15, 64))

    crop, label = CropDataset(str(small_crops), "val")[index]
    assert crop.shape == (3, 64, 64) and crop.dtype.is_floating_point is False
    np.testing.assert_array_equal(crop.permute(1, 2, 0).numpy(), saved[..., ::-1])  # RGB
    assert label == CLASS_NAMES.index(row["label"])


def test_an_image_in_two_splits_is_refused(segpc_records, tmp_path, prior):
    record = segpc_records["2048"]
    with pytest.raises(InputError, match="are the same image"):
        build_crop_dataset({"train": [record], "val": [record]}, str(tmp_path), prior=prior)


def test_detector_path_end_to_end(segpc_records, tmp_path):
    """A project detector config + checkpoint (tiny, random weights: any boxes will do) gives hard
    negatives through DefaultPredictor, at full-image coordinates."""
    from detectron2.modeling import build_model

    from detectron2_myeloma import load_config
    from detectron2_myeloma.engine.box_predictor import box_predictor

    cfg = load_config("configs/SegPC/mask_rcnn_lite2_fpn.yaml", [
        "MODEL.TIMM.NAME", "test_efficientnet", "MODEL.TIMM.PRETRAINED", False, "MODEL.DEVICE", "cpu",
        "MODEL.MASK_ON", False, "MODEL.FPN.OUT_CHANNELS", 16, "MODEL.ROI_BOX_HEAD.FC_DIM", 16,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "TEST.DETECTIONS_PER_IMAGE", 10,
        "INPUT.MIN_SIZE_TEST", 192, "INPUT.MAX_SIZE_TEST", 256])
    torch.manual_seed(0)
    (tmp_path / "detector.yaml").write_text(cfg.dump())
    torch.save({"model": build_model(cfg).state_dict()}, tmp_path / "detector.pth")

    predictor = box_predictor(str(tmp_path / "detector.yaml"), str(tmp_path / "detector.pth"), "cpu")
    record = segpc_records["2048"]
    image = cv2.imread(record["file_name"])
    boxes = predictor(image)
    assert boxes.shape[1] == 4 and 0 < len(boxes) <= 10
    assert (boxes >= 0).all()
    assert (boxes[:, [0, 2]] <= image.shape[1]).all() and (boxes[:, [1, 3]] <= image.shape[0]).all()

    balance = build_crop_dataset({"train": [record]}, str(tmp_path / "crops"), size=32, predictor=predictor)
    expected = len(detector_negatives(predictor, image, record["annotations"]))
    assert balance["train"]["sources"].get("detector", 0) <= expected
    assert set(balance["train"]["sources"]) <= {"annotation", "detector"}
