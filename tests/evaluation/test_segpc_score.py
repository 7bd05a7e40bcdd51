"""The SegPC scorer against a direct transcription of the official algorithm, on real SegPC masks."""
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2_myeloma.data.masks import annotation_from_mask, mask_to_rle
from detectron2_myeloma.data.report import DatasetError
from detectron2_myeloma.data.segpc_format import (
    CYTOPLASM_VALUE,
    NUCLEUS_VALUE,
    SUBMISSION_SHAPE,
    decode_pixel_list,
    encode_pixel_list,
    format_submission_line,
    read_submission,
    resize_to_submission,
)
from detectron2_myeloma.evaluation.segpc_evaluator import SegPCEvaluator
from detectron2_myeloma.evaluation.segpc_metrics import ImageMatch, aggregate, score_segpc
from detectron2_myeloma.evaluation.submission_score import load_gt_dir, score_submission
from detectron2_myeloma.structures import NUCLEUS_MASKS
from testing.segpc_reference import official_miou, perturbations

REPO = Path(__file__).resolve().parents[2]
Y_DIR = REPO / "datasets" / "segpc_mini" / "train" / "y"
IMAGE_IDS = ("1997", "2009", "2032")  # 3 + 2 + 4 cells: small enough to keep the reference loops quick


@pytest.fixture(scope="module")
def y_dir(tmp_path_factory) -> Path:
    """A y/ folder holding only the test images' masks."""
    folder = tmp_path_factory.mktemp("y")
    for path in Y_DIR.iterdir():
        if path.name.split("_")[0] in IMAGE_IDS:
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def gt(y_dir) -> Dict[str, List[np.ndarray]]:
    return load_gt_dir(str(y_dir))


@pytest.fixture(scope="module")
def parts(gt) -> Dict[str, List[Tuple[np.ndarray, np.ndarray]]]:
    """(nucleus, cytoplasm) of every GT cell in the submission frame."""
    out = {}
    for image_id, masks in gt.items():
        small = [cv2.resize(m, (1440, 1080), interpolation=cv2.INTER_NEAREST) for m in masks]
        out[image_id] = [(m == NUCLEUS_VALUE, m == CYTOPLASM_VALUE) for m in small]
    return out


@pytest.fixture(scope="module")
def cells(parts) -> Dict[str, List[np.ndarray]]:
    return {image_id: [nuc | cyt for nuc, cyt in p] for image_id, p in parts.items()}


def test_gt_loaded_in_k_order(gt):
    assert sorted(gt) == sorted(IMAGE_IDS)
    assert [len(gt[i]) for i in IMAGE_IDS] == [3, 2, 4]
    assert gt["1997"][0].shape == (1536, 2040) and gt["1997"][0].dtype == np.uint8


def test_agrees_with_official_transcription(gt, cells):
    for name, predictions in perturbations(cells, IMAGE_IDS[0]).items():
        got = score_segpc(gt, predictions).miou
        assert got == pytest.approx(official_miou(gt, predictions), abs=1e-6), name
        assert (got == 1.0) == (name == "extra"), name  # extra instances cost nothing in the mIoU


def test_per_image_and_semantic_metrics(gt, cells):
    shifted = perturbations(cells, IMAGE_IDS[0])["shifted"]
    score = score_segpc(gt, shifted)
    for image_id in IMAGE_IDS:
        alone = official_miou({image_id: gt[image_id]}, shifted)
        assert score.per_image[image_id]["mIoU"] == pytest.approx(alone, abs=1e-6)
    accuracy, iou, rmse = [], [], []
    for image_id in IMAGE_IDS:
        truth, pred = np.logical_or.reduce(cells[image_id]), np.logical_or.reduce(shifted[image_id])
        accuracy.append(np.mean(truth == pred))
        iou.append((truth & pred).sum() / (truth | pred).sum())
        rmse.append(np.sqrt(np.mean((truth.astype(float) - pred) ** 2)))
    assert score.pixel_accuracy == pytest.approx(np.mean(accuracy), abs=1e-9)
    assert score.semantic_iou == pytest.approx(np.mean(iou), abs=1e-9)
    assert score.semantic_rmse == pytest.approx(np.mean(rmse), abs=1e-9)
    assert 0 < score.mean_dice < 1 and score.mean_dice > score.miou


def test_false_positives_are_visible(gt, cells):
    """mIoU ignores extra instances; precision and AP must not."""
    extra = perturbations(cells, IMAGE_IDS[0])["extra"]
    score = score_segpc(gt, extra)
    assert score.miou == 1.0 and score.recall50 == 1.0
    assert score.precision50 == pytest.approx(9 / (9 + 3 * 3))
    confident_fp = {i: [0.5] * (len(ms) - 3) + [0.9, 0.9, 0.9] for i, ms in extra.items()}
    timid_fp = {i: [0.9] * (len(ms) - 3) + [0.1, 0.1, 0.1] for i, ms in extra.items()}
    assert score_segpc(gt, extra, confident_fp).ap50 < 0.7
    assert score_segpc(gt, extra, timid_fp).ap50 == pytest.approx(1.0)


def test_ap_matches_cocoeval(gt, cells):
    """AP / AP50 equal pycocotools' COCOeval on the same masks in the submission frame."""
    predictions = perturbations(cells, IMAGE_IDS[0])["mixed"]
    rng = np.random.default_rng(0)
    scores = {i: rng.random(len(ms)).tolist() for i, ms in predictions.items()}
    ours = score_segpc(gt, predictions, scores)

    def rle(mask):
        r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        r["counts"] = r["counts"].decode("ascii")
        return r

    images, annotations, detections = [], [], []
    for n, image_id in enumerate(IMAGE_IDS):
        images.append({"id": n, "height": SUBMISSION_SHAPE[0], "width": SUBMISSION_SHAPE[1]})
        for cell in cells[image_id]:
            annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id": 1, "iscrowd": 0,
                                "segmentation": rle(cell), "area": float(cell.sum()), "bbox": [0, 0, 1, 1]})
        for mask, s in zip(predictions[image_id], scores[image_id]):
            detections.append({"image_id": n, "category_id": 1, "segmentation": rle(mask), "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        categories = [{"id": 1, "name": "cell"}]
        coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(detections), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert ours.ap == pytest.approx(evaluator.stats[0], abs=1e-9)
    assert ours.ap50 == pytest.approx(evaluator.stats[1], abs=1e-9)


def test_submission_round_trip_scores_exactly_one(gt, parts, tmp_path):
    path = tmp_path / "submission.txt"
    path.write_text("".join(format_submission_line(i, parts[i]) + "\n" for i in IMAGE_IDS))
    submitted = read_submission(str(path))
    assert sorted(submitted) == sorted(IMAGE_IDS)
    for image_id in IMAGE_IDS:
        for (nuc, cyt), (nuc_in, cyt_in) in zip(submitted[image_id], parts[image_id]):
            assert np.array_equal(nuc, nuc_in) and np.array_equal(cyt, cyt_in)
    predictions = {i: [nuc | cyt for nuc, cyt in inst] for i, inst in submitted.items()}
    score = score_segpc(gt, predictions)
    assert score.miou == 1.0
    assert (score.precision50, score.recall50) == (1.0, 1.0)
    assert (score.semantic_iou, score.semantic_rmse) == (1.0, 0.0)


def test_empty_submission_scores_zero(gt, tmp_path):
    path = tmp_path / "submission.txt"
    path.write_text("")
    predictions = read_submission(str(path))
    assert predictions == {}
    assert score_segpc(gt, predictions).miou == 0.0 == official_miou(gt, predictions)


def test_pixel_list_round_trip():
    rng = np.random.default_rng(1)
    mask = rng.random(SUBMISSION_SHAPE) < 0.01
    mask[0, 0] = mask[-1, -1] = True
    text = encode_pixel_list(mask)
    rows, cols = np.nonzero(mask)
    assert text == ";".join(f"{r},{c}" for r, c in zip(rows, cols))
    assert np.array_equal(decode_pixel_list(text), mask)
    assert encode_pixel_list(np.eye(3, dtype=bool)) == "0,0;1,1;2,2"
    assert np.array_equal(decode_pixel_list("0,2", shape=(1, 3)), [[False, False, True]])
    with pytest.raises(ValueError, match="empty"):
        encode_pixel_list(np.zeros(SUBMISSION_SHAPE, bool))
    with pytest.raises(ValueError, match="expected"):
        format_submission_line("1", [(np.ones((4, 4), bool), np.ones((4, 4), bool))])


def test_resize_to_submission_is_nearest():
    mask = np.zeros((1536, 2040), np.uint8)
    mask[100:300, 400:500] = NUCLEUS_VALUE
    small = resize_to_submission(mask)
    assert small.dtype == bool and small.shape == SUBMISSION_SHAPE
    expected = cv2.resize(mask, (1440, 1080), interpolation=cv2.INTER_NEAREST) > 0
    assert np.array_equal(small, expected)
    assert np.array_equal(resize_to_submission(mask > 0), expected)


@pytest.mark.parametrize(
    "bad_line, problem",
    [
        ("7\t1,2;3,4 5,6;x,8", "only digits"),
        ("7\t1,2;3,4", "expected '<nucleus pixels> <cytoplasm pixels>'"),
        ("7\t1,2;3,4 ", "empty pixel list"),
        ("7\t1,2;3 5,6", "not of the form"),
        ("7\t1080,2 5,6", "outside"),
        ("1\t1,2 3,4", "already listed on line 1"),
    ],
)
def test_malformed_submission_names_file_and_line(tmp_path, bad_line, problem):
    path = tmp_path / "submission.txt"
    path.write_text(f"1\t1,2 3,4\n{bad_line}\n")
    with pytest.raises(DatasetError, match=re.escape(problem)) as err:
        read_submission(str(path))
    assert str(err.value).startswith(str(path)) and "line 2" in str(err.value)


@pytest.fixture
def registered_dataset(gt, cells, parts):
    """A registered dataset of the test images with cell and nucleus annotations at full size."""
    name = f"segpc_score_test_{uuid.uuid4().hex[:8]}"
    dicts = []
    for image_id in IMAGE_IDS:
        annotations = []
        for mask in gt[image_id]:
            annotations.append(annotation_from_mask(mask > 0, 0))
            annotations.append(annotation_from_mask(mask == NUCLEUS_VALUE, 1))
        dicts.append({"file_name": f"{image_id}.jpg", "image_id": image_id, "height": 1536, "width": 2040,
                      "annotations": annotations})
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["cell", "nucleus"])
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _fake_outputs(gt, shift: int) -> List[Tuple[dict, dict]]:
    """Model outputs at full resolution: every GT cell (shifted), its nucleus as a nucleus prediction
    (to be ignored) and a low-score false positive (below the threshold)."""
    pairs = []
    for image_id in IMAGE_IDS:
        masks = [np.roll(m > 0, shift, axis=1) for m in gt[image_id]]
        masks += [np.roll(m == NUCLEUS_VALUE, 500, axis=0) for m in gt[image_id]]
        masks.append(np.ones((1536, 2040), bool))
        n = len(gt[image_id])
        instances = Instances((1536, 2040))
        instances.pred_masks = torch.from_numpy(np.stack(masks))
        instances.scores = torch.tensor([0.9] * (2 * n) + [0.2])
        instances.pred_classes = torch.tensor([0] * n + [1] * n + [0])
        pairs.append(({"image_id": image_id, "height": 1536, "width": 2040}, {"instances": instances}))
    return pairs


def test_evaluator_perfect_and_shifted(gt, registered_dataset, tmp_path):
    evaluator = SegPCEvaluator(registered_dataset, output_dir=str(tmp_path), score_threshold=0.5)
    evaluator.reset()
    for inp, out in _fake_outputs(gt, 0):
        evaluator.process([inp], [out])
    metrics = evaluator.evaluate()["segpc"]
    assert metrics["mIoU"] == 1.0 and metrics["P@0.5"] == 1.0 and metrics["AP"] == pytest.approx(1.0)
    written = json.loads((tmp_path / "segpc_scores.json").read_text())
    assert sorted(written["per_image"]) == sorted(IMAGE_IDS) and written["metrics"]["mIoU"] == 1.0

    evaluator.reset()
    shifted = _fake_outputs(gt, 15)
    for inp, out in shifted:
        evaluator.process([inp], [out])
    metrics = evaluator.evaluate()["segpc"]
    predictions = {}
    for inp, out in shifted:
        cell_masks = out["instances"].pred_masks.numpy()[: len(gt[inp["image_id"]])]
        predictions[inp["image_id"]] = [resize_to_submission(m) for m in cell_masks]
    assert metrics["mIoU"] < 1.0
    assert metrics["mIoU"] == pytest.approx(official_miou(gt, predictions), abs=1e-6)


def test_cli_last_line(y_dir, parts, tmp_path):
    """One image submitted perfectly, one partly, one missing: mIoU = (3 + 1) / 9."""
    submission = tmp_path / "submission.txt"
    submission.write_text(format_submission_line("1997", parts["1997"]) + "\n"
                          + format_submission_line("2032", parts["2032"][:1]) + "\n")
    output = tmp_path / "scores.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "score_segpc.py"), "--gt", str(y_dir), "--submission",
         str(submission), "--output", str(output)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )
    assert result.stdout.splitlines()[-1] == f"mIoU {4 / 9:.6f}"
    metrics = json.loads(output.read_text())["metrics"]
    assert metrics["nucleus_mIoU"] == pytest.approx(4 / 9)  # the nuclei submitted are the annotated ones
    per_image = json.loads(output.read_text())["per_image"]
    assert per_image["1997"]["mIoU"] == 1.0 and per_image["2009"]["mIoU"] == 0.0


def test_the_shortfall_splits_into_missed_merged_and_boundary():
    """Five cells: one exact, one matched with a loose boundary, two merged by one prediction, one
    missed; a stray prediction on no cell changes nothing. The three losses sum to 1 - mIoU."""
    ious = np.array([[1.0, 0.0, 0.0, 0.0],
                     [0.0, 0.8, 0.0, 0.0],
                     [0.0, 0.0, 0.45, 0.0],
                     [0.0, 0.0, 0.40, 0.0],
                     [0.0, 0.05, 0.0, 0.0]])
    match = ImageMatch(ious=ious, scores=None, true_pos=1, false_pos=0, false_neg=0)
    score = aggregate({"a": match, "b": ImageMatch(np.zeros((1, 0)), None, 0, 0, 1)})  # b: no prediction
    assert (score.missed_cells, score.merged_cells) == (2, 2)
    assert score.loss_boundary == pytest.approx(0.2 / 6)
    assert score.loss_merged == pytest.approx((0.55 + 0.60) / 6)
    assert score.loss_missed == pytest.approx((0.95 + 1.0) / 6)
    assert score.loss_missed + score.loss_merged + score.loss_boundary == pytest.approx(1 - score.miou)
    assert score.to_dict()["loss_merged"] == score.loss_merged


def test_evaluator_scores_the_nuclei_of_the_submitted_cells(gt, tmp_path):
    """nucleus_mIoU: each annotated nucleus against the nuclei of the submitted cells: the model's own
    (pred_nucleus_masks) when it predicts them, else the estimation rule's, which is far from them."""
    name = f"segpc_nucleus_test_{uuid.uuid4().hex[:8]}"
    dicts = [{"file_name": f"{i}.jpg", "image_id": i, "height": 1536, "width": 2040,
              "annotations": [{**annotation_from_mask(m > 0, 0), "nucleus": mask_to_rle(m == NUCLEUS_VALUE)}
                              for m in gt[i]]} for i in IMAGE_IDS]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["cell"])
    try:
        scores = {}
        for own in (True, False):
            evaluator = SegPCEvaluator(name, output_dir=str(tmp_path), distributed=False)
            evaluator.reset()
            for image_id in IMAGE_IDS:
                instances = Instances((1536, 2040), pred_masks=torch.from_numpy(np.stack([m > 0 for m in gt[image_id]])),
                                      scores=torch.full((len(gt[image_id]),), 0.9),
                                      pred_classes=torch.zeros(len(gt[image_id]), dtype=torch.long))
                if own:
                    instances.set(NUCLEUS_MASKS, torch.from_numpy(np.stack([m == NUCLEUS_VALUE for m in gt[image_id]])))
                evaluator.process([{"image_id": image_id}], [{"instances": instances}])
            scores[own] = evaluator.evaluate()["segpc"]
        written = json.loads((tmp_path / "segpc_scores.json").read_text())
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert scores[True]["mIoU"] == scores[False]["mIoU"] == 1.0
    assert scores[True]["nucleus_mIoU"] == 1.0
    assert 0.2 < scores[False]["nucleus_mIoU"] < 0.9
    assert written["nucleus_sources"] == {"estimated nucleus": sum(len(gt[i]) for i in IMAGE_IDS)}


def test_submitted_nuclei_are_scored_against_the_annotated_ones(y_dir, parts, tmp_path):
    """nucleus_mIoU of a submission: each annotated nucleus against the submitted nucleus lists. The
    cells exact and the nuclei swapped for the cytoplasm: the cell mIoU stays 1, the nucleus one falls."""
    exact, swapped = tmp_path / "exact.txt", tmp_path / "swapped.txt"
    exact.write_text("".join(format_submission_line(i, parts[i]) + "\n" for i in IMAGE_IDS))
    swapped.write_text("".join(format_submission_line(i, [(c, n) for n, c in parts[i]]) + "\n" for i in IMAGE_IDS))
    score, _ = score_submission(str(y_dir), str(exact))
    assert score.miou == 1.0 and score.nucleus_miou == 1.0
    score, _ = score_submission(str(y_dir), str(swapped))
    assert score.miou == 1.0 and score.nucleus_miou < 0.3
