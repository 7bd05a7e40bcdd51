"""Training on real bundled crops: the loss falls, the tool writes a sane report, and the classifier
beats the majority class on val images it never saw."""
import json
import shutil

import pytest
import torch
from classifier_testutils import SEGPC_MINI, make_crops, small_cfg
from testutils import write_tiny_classifier

from detectron2_myeloma.classifier.dataset import CropDataset, read_manifest
from detectron2_myeloma.classifier.model import build_classifier, load_classifier
from detectron2_myeloma.classifier.trainer import build_criterion, train_steps
from detectron2_myeloma.data.datasets.builtin import SEGPC_MINI_TRAIN_IDS, SEGPC_MINI_VAL_IDS
from detectron2_myeloma.data.datasets.segpc import load_segpc
from cli import tool_main

train_main = tool_main("train_classifier")
evaluate_main = tool_main("evaluate_classifier")

FAST = ["MODEL.NAME", "tf_efficientnet_lite0", "INPUT.SIZE", "64", "DATALOADER.NUM_WORKERS", "0",
        "DEVICE", "cpu", "TEST.BATCH_SIZE", "32"]


def test_training_loss_falls(small_crops):
    """A few Adam steps on one batch of real crops (ImageNet-initialised, early stages frozen)."""
    torch.manual_seed(0)
    dataset = CropDataset(str(small_crops), "train")
    batch = torch.utils.data.default_collate([dataset[i] for i in range(0, len(dataset), 5)][:8])
    model = build_classifier(small_cfg(**{"MODEL.FREEZE_AT": 5}))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    criterion = build_criterion(small_cfg(), dataset.labels, model.device)
    losses = train_steps(model, [batch] * 3, optimizer, criterion)
    assert len(losses) == 3
    assert losses[-1] < 0.5 * losses[0]


def test_tool_writes_report(small_crops, tmp_path):
    out = tmp_path / "run"
    per_epoch = -(-len(read_manifest(str(small_crops), "train")) // 32)
    assert train_main(["--config-file", "configs/Classifier/lite2.yaml", "--crops", str(small_crops),
                       "--output", str(out), *FAST, "SOLVER.EPOCHS", "3", "SOLVER.MAX_STEPS",
                       str(per_epoch + 1), "MODEL.FREEZE_AT", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("model_best.pth", "model_last.pth", "metrics.json", "config.yaml", "confusion_matrix.png",
                 "roc_curve.png"):
        assert (out / name).stat().st_size > 0
    val_rows = read_manifest(str(small_crops), "val")
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["num_samples"] == len(val_rows)
    # the step cap ends training one step into the second epoch
    assert [h["steps"] for h in metrics["history"]] == [per_epoch, per_epoch + 1]
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "majority_rate"):
        assert 0 <= metrics[key] <= 1
    assert metrics["per_class"]["myeloma"]["support"] == sum(r["label"] == "myeloma" for r in val_rows)
    # the saved best model reproduces the reported accuracy through classify()
    model = load_classifier(str(out / "model_best.pth"), "cpu")
    dataset = CropDataset(str(small_crops), "val")
    crops, labels = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    predicted = (model.classify(crops) > 0.5).long()
    assert (predicted == labels).float().mean().item() == pytest.approx(metrics["accuracy"])
    # tools/evaluate_classifier.py on the same crops reports the same numbers
    assert evaluate_main(["--weights", str(out / "model_best.pth"), "--crops", str(small_crops),
                          "--output", str(tmp_path / "eval"), "--workers", "0"]) == 0
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["confusion_matrix"] == metrics["confusion_matrix"]
    for key in ("accuracy", "balanced_accuracy", "roc_auc"):
        assert report[key] == pytest.approx(metrics[key]), key
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 0


def test_evaluating_on_crops_cut_otherwise_is_one_line(small_crops, tmp_path, capsys):
    weights = write_tiny_classifier(tmp_path / "tiny.pth", size=64)  # box-relative 64 px crops, as small_crops
    other = tmp_path / "crops"
    shutil.copytree(small_crops, other)
    params = json.loads((other / "crops.json").read_text())
    (other / "crops.json").write_text(json.dumps({**params, "crop_diameters": 2.0}))
    assert evaluate_main(["--weights", str(weights), "--crops", str(other), "--output", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "crop diameters 2.0" in err[0] and "INPUT.CROP_DIAMETERS 0.0" in err[0]
    assert evaluate_main(["--weights", str(weights), "--crops", str(tmp_path), "--output", str(tmp_path / "e")]) == 1
    assert "crops.json" in capsys.readouterr().err and not (tmp_path / "e").exists()
    # a folder of the earlier crop code (squares shifted inside the image at its borders) is refused too
    (other / "crops.json").write_text(json.dumps({k: v for k, v in params.items() if k != "placement"}))
    assert evaluate_main(["--weights", str(weights), "--crops", str(other), "--output", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier version" in err[0] and "rebuild" in err[0]


def test_crops_of_another_size_are_refused(small_crops, tmp_path, capsys):
    assert train_main(["--config-file", "configs/Classifier/lite2.yaml", "--crops", str(small_crops),
                       "--output", str(tmp_path), "DEVICE", "cpu"]) == 1
    assert "INPUT.SIZE 128" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--crops", "no/such/crops"], "no/such/crops/crops.json: No such file"),
    (["--crops", "CROPS", "SOLVER.EPOCS", "3"], "Non-existent key: SOLVER.EPOCS"),
    (["--crops", "CROPS", "SOLVER.EPOCHS", "three"], "Type mismatch"),
])
def test_user_errors_are_one_line(small_crops, tmp_path, capsys, argv, message):
    argv = [str(small_crops) if a == "CROPS" else a for a in argv]
    assert train_main(["--config-file", "configs/Classifier/lite2.yaml", "--output", str(tmp_path / "run"),
                       *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "run").exists()


def test_classifier_beats_majority_on_unseen_images(tmp_path):
    """segpc_mini's own split (train 10 images, val 4 others), 64 px crops, Lite0 with the stem and 3
    stages frozen, 8 epochs of 10 steps. The thresholds sit below what seeds 0-2 reached (docs/RESULTS.md,
    "Classifier test margins"); three training images were not enough to beat chance reliably."""
    records = {r["image_id"]: r for r in load_segpc(str(SEGPC_MINI))}
    crops = make_crops(records, list(SEGPC_MINI_TRAIN_IDS), list(SEGPC_MINI_VAL_IDS), tmp_path / "crops")
    assert train_main(["--config-file", "configs/Classifier/lite2.yaml", "--crops", str(crops),
                       "--output", str(tmp_path / "run"), *FAST, "SOLVER.EPOCHS", "8",
                       "SOLVER.BATCH_SIZE", "16", "SOLVER.BASE_LR", "1e-3", "MODEL.FREEZE_AT", "3"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] > metrics["majority_rate"]
    assert metrics["balanced_accuracy"] > 0.65
    assert metrics["roc_auc"] > 0.7
