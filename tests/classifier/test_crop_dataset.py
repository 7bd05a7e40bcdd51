"""Crop dataset: the stain heuristic finds real unannotated nuclei, splits never share an image, the
manifest and balance agree with the files, detector negatives are filtered and merged."""
import json

import cv2
import numpy as np
import pytest
import torch

from detectron2_myeloma.data.crop_dataset import (CLASS_NAMES, CellSizePrior, CropDataset, annotation_boxes,
                                                  build_crop_dataset, detector_negatives, find_nucleus_blobs,
                                                  image_candidates, max_iou, read_manifest, split_by_image,
                                                  stain_negatives)
from detectron2_myeloma.data.masks import rle_to_mask


@pytest.fixture(scope="module")
def image_1991(segpc_records):
    record = segpc_records["1991"]
    return record, cv2.imread(record["file_name"])


@pytest.fixture(scope="module")
def prior(segpc_records):
    return CellSizePrior.from_dataset(list(segpc_records.values()))


def test_size_prior_is_measured_from_nuclei(prior):
    # SegPC at 2040x1536: nuclei of ~26k..59k px, cells ~1.6x wider than their nucleus.
    assert 5_000 < prior.min_nucleus_area < prior.max_nucleus_area < 150_000
    assert 1.2 < prior.cell_scale < 2.2
    assert 0.1 < prior.work_scale < 0.5


def test_size_prior_needs_nucleus_masks(segpc_records):
    record = dict(segpc_records["1991"])
    record["annotations"] = [{k: v for k, v in a.items() if k != "nucleus"} for a in record["annotations"]]
    with pytest.raises(ValueError, match="nucleus masks"):
        CellSizePrior.from_dataset([record])


def test_heuristic_finds_annotated_nuclei(image_1991, prior):
    """The blob finder is a nucleus detector: most annotated nuclei of a real image get a blob."""
    record, image = image_1991
    blobs = find_nucleus_blobs(image, prior)
    nuclei = [rle_to_mask(a["nucleus"]) for a in record["annotations"]]
    found = sum(any(n[int(cy), int(cx)] for _, (cx, cy) in blobs) for n in nuclei)
    assert found >= 0.8 * len(nuclei)


def test_heuristic_negatives_do_not_overlap_annotations(image_1991, prior):
    record, image = image_1991
    negatives = stain_negatives(image, record["annotations"], prior)
    assert len(negatives) >= 5  # 1991 has many unannotated lymphocytes and plasma-like cells
    annotated = np.zeros(image.shape[:2], bool)
    for a in record["annotations"]:
        annotated |= rle_to_mask(a["segmentation"])
    assert (max_iou(negatives, annotation_boxes(record["annotations"])) < 0.3).all()
    for x0, y0, x1, y1 in negatives:
        assert not annotated[int((y0 + y1) / 2), int((x0 + x1) / 2)]  # cell centre not in an annotated cell
        assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
        # cell-sized, like the annotated cells (235..528 px boxes on SegPC)
        assert 150 < max(x1 - x0, y1 - y0) < 700


def test_detector_negatives_filtered_and_deduplicated(image_1991, prior):
    record, image = image_1991
    cells = annotation_boxes(record["annotations"])
    stain = stain_negatives(image, record["annotations"], prior)
    detections = np.concatenate([cells[:2] + 3, stain[:1] + 5, [[1700, 1300, 1900, 1500]]])

    candidates = image_candidates(record, image, prior, lambda _: detections, 0.3)
    by_source = {s: np.array([b for b, _, src in candidates if src == s]) for s in ("annotation", "detector",
                                                                                   "stain_heuristic")}
    assert len(by_source["annotation"]) == len(cells)
    np.testing.assert_allclose(by_source["detector"], detections[2:])  # the two matching cells are dropped
    assert len(by_source["stain_heuristic"]) == len(stain) - 1  # the one a detection duplicates
    assert all(label == (src == "annotation") for _, label, src in candidates)


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
    from detectron2_myeloma.data.crops import crop_and_resize

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
    with pytest.raises(ValueError, match="both split"):
        build_crop_dataset({"train": [record], "val": [record]}, str(tmp_path), prior=prior)


def test_detector_path_end_to_end(segpc_records, tmp_path):
    """A project detector config + checkpoint (tiny, random weights: any boxes will do) gives hard
    negatives through DefaultPredictor, at full-image coordinates."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from detectron2_myeloma import add_myeloma_config
    from detectron2_myeloma.data.crop_dataset import detectron2_box_predictor

    cfg = get_cfg()
    add_myeloma_config(cfg)
    cfg.merge_from_file("configs/SegPC/mask_rcnn_lite2_fpn.yaml")
    cfg.merge_from_list([
        "MODEL.TIMM.NAME", "test_efficientnet", "MODEL.TIMM.PRETRAINED", False, "MODEL.DEVICE", "cpu",
        "MODEL.MASK_ON", False, "MODEL.FPN.OUT_CHANNELS", 16, "MODEL.ROI_BOX_HEAD.FC_DIM", 16,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "TEST.DETECTIONS_PER_IMAGE", 10,
        "INPUT.MIN_SIZE_TEST", 192, "INPUT.MAX_SIZE_TEST", 256])
    torch.manual_seed(0)
    (tmp_path / "detector.yaml").write_text(cfg.dump())
    torch.save({"model": build_model(cfg).state_dict()}, tmp_path / "detector.pth")

    predictor = detectron2_box_predictor(str(tmp_path / "detector.yaml"), str(tmp_path / "detector.pth"),
                                         "cpu")
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
