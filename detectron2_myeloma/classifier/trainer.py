"""Training and evaluation of the cell classifier on a crop folder (``tools/build_crops.py``).

Each epoch trains on the ``train`` crops, evaluates on the ``val`` crops, saves ``model_last.pth`` and,
when val balanced accuracy improves, ``model_best.pth``. At the end the best checkpoint is evaluated
again and reported (``metrics.json``, confusion matrix and ROC curve PNGs).
"""
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.utils.env import seed_all_rng
from fvcore.common.config import CfgNode
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm import tqdm

from ..utils.device import available_device
from ..utils.errors import InputError
from .augmentation import build_crop_augmentation
from .crops import CROP_PLACEMENT
from .dataset import CropDataset, read_crop_params
from .evaluation import classification_metrics, format_metrics, write_classification_report
from .labels import CLASS_NAMES, MYELOMA
from .model import CellClassifier, build_classifier, classifier_checkpoint, load_classifier

logger = logging.getLogger(__name__)


def class_weights(labels: List[int]) -> torch.Tensor:
    """``n / (num_classes * n_class)``: each class then weighs as much in the loss as the other. A
    (num_classes,) float32 CPU tensor, indexed as :data:`CLASS_NAMES`."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"training crops need both classes, got counts {dict(zip(CLASS_NAMES, counts))}")
    return torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)


def build_train_loader(cfg: CfgNode, dataset: CropDataset) -> DataLoader:
    """Shuffled batches; class-balanced sampling with replacement when SOLVER.CLASS_BALANCE is "sampler"."""
    generator = torch.Generator().manual_seed(cfg.SEED)
    sampler = None
    if cfg.SOLVER.CLASS_BALANCE == "sampler":
        per_sample = class_weights(dataset.labels)[dataset.labels]
        sampler = WeightedRandomSampler(per_sample.double(), len(dataset), replacement=True,
                                        generator=generator)
    return DataLoader(dataset, batch_size=cfg.SOLVER.BATCH_SIZE, shuffle=sampler is None, sampler=sampler,
                      num_workers=cfg.DATALOADER.NUM_WORKERS, generator=generator, drop_last=False)


def build_criterion(cfg: CfgNode, labels: List[int], device: torch.device) -> nn.Module:
    """Cross-entropy, class-weighted when SOLVER.CLASS_BALANCE is "loss"."""
    balance = cfg.SOLVER.CLASS_BALANCE
    if balance not in ("loss", "sampler", "none"):
        raise ValueError(f"SOLVER.CLASS_BALANCE must be loss, sampler or none, got {balance!r}")
    weights = class_weights(labels).to(device) if balance == "loss" else None
    return nn.CrossEntropyLoss(weight=weights)


def train_steps(model: CellClassifier, batches, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                max_steps: int = 0) -> List[float]:
    """One pass of optimisation over ``batches`` ((crops, labels) pairs: (B, 3, S, S) uint8 RGB crops and
    (B,) int64 labels, as :func:`build_train_loader` gives them); returns each step's loss. ``max_steps``
    > 0 stops early."""
    model.train()
    losses = []
    for crops, labels in batches:
        loss = criterion(model(crops.to(model.device)), labels.to(model.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{losses[-1]:.4f}")
        if max_steps and len(losses) >= max_steps:
            break
    return losses


@torch.no_grad()
def predict_dataset(model: CellClassifier, dataset: CropDataset, batch_size: int = 64,
                    num_workers: int = 0) -> Tuple[np.ndarray, np.ndarray, float]:
    """(labels, myeloma probabilities, mean unweighted cross-entropy) of every crop of ``dataset``: (N,)
    int64 and (N,) float32 arrays, in the dataset's order, and a float."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    model.eval()
    labels, probs, loss = [], [], 0.0
    for crops, target in loader:
        logits = model(crops.to(model.device))
        loss += float(F.cross_entropy(logits, target.to(model.device), reduction="sum"))
        probs.append(torch.softmax(logits, dim=1)[:, MYELOMA].cpu())
        labels.append(target)
    return torch.cat(labels).numpy(), torch.cat(probs).numpy(), loss / len(dataset)


def check_crop_params(crops_dir: str, size: int, margin: float, crop_diameters: float) -> None:
    """Refuse a crop folder cut differently from what the classifier sees at inference."""
    params = read_crop_params(crops_dir)
    diameters = params.get("crop_diameters", 0.0)  # folders of earlier versions: box-relative crops
    if (params["size"] != size or abs(params["margin"] - margin) > 1e-9
            or abs(diameters - crop_diameters) > 1e-9):
        raise InputError(
            f"{crops_dir} holds {params['size']} px crops with margin {params['margin']} and crop diameters "
            f"{diameters} but the classifier takes INPUT.SIZE {size}, INPUT.CROP_MARGIN {margin} and "
            f"INPUT.CROP_DIAMETERS {crop_diameters}: rebuild the crops with tools/build_crops.py "
            "--size/--margin/--crop-diameters, or set those keys (crops are resized once)")
    if params.get("placement") != CROP_PLACEMENT:
        raise InputError(f"{crops_dir} holds crops cut by an earlier version (squares shifted inside the image "
                         "at its borders, off their cell), not centred and padded as the classifier's crops "
                         "are now: rebuild them with tools/build_crops.py")


def evaluate_classifier(weights: str, crops_dir: str, split: str, output_dir: str, batch_size: int = 64,
                        num_workers: int = 0) -> Dict:
    """A trained classifier's report (:func:`write_classification_report`) on one split of a crop folder
    cut as its training crops were, e.g. crops of images it never saw."""
    if not os.path.isfile(weights):
        raise InputError(f"{weights}: no such classifier checkpoint")
    model = load_classifier(weights)
    check_crop_params(crops_dir, model.input_size, model.crop_margin, model.crop_diameters)
    dataset = CropDataset(crops_dir, split)
    if len(dataset) == 0:
        raise InputError(f"{crops_dir}: no {split!r} crops in its manifest.csv")
    labels, probs, loss = predict_dataset(model, dataset, batch_size, num_workers)
    return write_classification_report(labels, probs, output_dir, model.threshold,
                                       extra={"weights": weights, "crops_dir": crops_dir, "split": split,
                                              "loss": loss})


def train_classifier(cfg: CfgNode, crops_dir: str, output_dir: Optional[str] = None) -> Dict:
    """Train on ``crops_dir`` train crops, select by val balanced accuracy, report the best checkpoint.

    Returns the final metrics (also in ``output_dir/metrics.json``) with ``best_epoch`` and a per-epoch
    ``history`` (train loss of each step, val loss and val metrics).
    """
    output_dir = output_dir or cfg.OUTPUT_DIR
    check_crop_params(crops_dir, cfg.INPUT.SIZE, cfg.INPUT.CROP_MARGIN, cfg.INPUT.CROP_DIAMETERS)
    train_set = CropDataset(crops_dir, "train", build_crop_augmentation(cfg.AUG))
    val_set = CropDataset(crops_dir, "val")
    for split, crops in (("train", train_set), ("val", val_set)):
        if len(crops) == 0:
            raise InputError(f"{crops_dir}: no {split} crops in manifest.csv")
    os.makedirs(output_dir, exist_ok=True)
    seed_all_rng(cfg.SEED)
    device = torch.device(available_device(cfg.DEVICE))
    loader = build_train_loader(cfg, train_set)
    criterion = build_criterion(cfg, train_set.labels, device)
    model = build_classifier(cfg).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
    counts = dict(zip(CLASS_NAMES, np.bincount(train_set.labels, minlength=len(CLASS_NAMES)).tolist()))
    logger.info("Training %s on %d crops (%s), validating on %d, on %s", cfg.MODEL.NAME, len(train_set),
                counts, len(val_set), device)
    best_path = os.path.join(output_dir, "model_best.pth")
    workers = cfg.DATALOADER.NUM_WORKERS
    history, best, steps = [], -1.0, 0
    for epoch in range(1, cfg.SOLVER.EPOCHS + 1):
        remaining = cfg.SOLVER.MAX_STEPS - steps if cfg.SOLVER.MAX_STEPS else 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.SOLVER.EPOCHS}", leave=False, dynamic_ncols=True)
        losses = train_steps(model, bar, optimizer, criterion, remaining)
        bar.close()
        steps += len(losses)
        labels, probs, val_loss = predict_dataset(model, val_set, cfg.TEST.BATCH_SIZE, workers)
        metrics = classification_metrics(labels, probs, cfg.TEST.THRESHOLD)
        history.append({"epoch": epoch, "steps": steps, "train_losses": losses, "val_loss": val_loss,
                        **{f"val_{k}": metrics[k] for k in ("accuracy", "balanced_accuracy", "roc_auc")}})
        improved = metrics["balanced_accuracy"] > best
        state = classifier_checkpoint(model, cfg, epoch=epoch,
                                      val_balanced_accuracy=metrics["balanced_accuracy"])
        torch.save(state, os.path.join(output_dir, "model_last.pth"))
        if improved:
            best = metrics["balanced_accuracy"]
            torch.save(state, best_path)
        logger.info("epoch %d: train loss %.4f, val loss %.4f, val balanced accuracy %.3f%s",
                    epoch, float(np.mean(losses)), val_loss, metrics["balanced_accuracy"],
                    " (best)" if improved else "")
        if cfg.SOLVER.MAX_STEPS and steps >= cfg.SOLVER.MAX_STEPS:
            break
    best_model = load_classifier(best_path, device)
    labels, probs, _ = predict_dataset(best_model, val_set, cfg.TEST.BATCH_SIZE, workers)
    best_epoch = max(history, key=lambda h: h["val_balanced_accuracy"])["epoch"]
    extra = {"best_epoch": best_epoch, "crops_dir": crops_dir, "history": history}
    metrics = write_classification_report(labels, probs, output_dir, cfg.TEST.THRESHOLD, extra=extra)
    with open(os.path.join(output_dir, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    logger.info("Best checkpoint (epoch %d) on val:\n%s", best_epoch, format_metrics(metrics))
    return metrics
