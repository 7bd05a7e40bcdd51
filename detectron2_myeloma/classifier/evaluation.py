"""Metrics and report of the binary cell classifier (myeloma vs non-myeloma crops).

Balanced accuracy is the headline number: crop sets are imbalanced (more negatives than cells), and
a classifier that calls everything negative must not look good.
"""
import json
import os
from typing import Dict, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import (ConfusionMatrixDisplay, RocCurveDisplay, accuracy_score, balanced_accuracy_score,
                             confusion_matrix, precision_recall_fscore_support, roc_auc_score)

from .labels import CLASS_NAMES, MYELOMA


def classification_metrics(labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5) -> dict:
    """Per-class precision/recall/F1/support, accuracy, balanced accuracy, ROC AUC and confusion matrix.

    Args:
        labels: (N,) integer true labels (indices into :data:`CLASS_NAMES`; 1 = myeloma), array or list.
        probs: (N,) predicted myeloma probabilities (any float dtype); a crop is called myeloma when its
            probability > threshold.

    Balanced accuracy averages the recall of the classes present in ``labels``; ROC AUC is None when
    only one class is present. ``majority_rate`` is the accuracy of always answering the commonest class.
    """
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=float)
    if labels.shape != probs.shape or labels.size == 0:
        raise ValueError(f"need as many labels as probabilities (>0), got {labels.shape} and {probs.shape}")
    predicted = (probs > threshold).astype(int)
    classes = list(range(len(CLASS_NAMES)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0)
    both = bool((support > 0).all())
    return {
        "num_samples": int(labels.size),
        "threshold": threshold,
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "roc_auc": float(roc_auc_score(labels, probs)) if both else None,
        "majority_rate": float(support.max() / labels.size),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(CLASS_NAMES)},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], path: str) -> None:
    """Confusion matrix PNG (scikit-learn's display): rows true class, columns predicted class, counts in
    the cells."""
    fig = Figure(figsize=(4.2, 3.6), dpi=120)
    ax = fig.add_subplot()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(CLASS_NAMES)).plot(ax=ax, cmap="Blues")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path)


def plot_roc_curve(labels: Sequence[int], probs: Sequence[float], auc: Optional[float], path: str) -> None:
    """ROC curve PNG (scikit-learn's display, myeloma as positive); only the chance diagonal when one
    class is missing (``auc`` None)."""
    fig = Figure(figsize=(4, 4), dpi=120)
    ax = fig.add_subplot()
    if auc is None:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
    else:
        RocCurveDisplay.from_predictions(labels, probs, pos_label=MYELOMA, name="classifier", ax=ax,
                                         plot_chance_level=True)
    ax.set_title("myeloma vs non-myeloma")
    fig.tight_layout()
    fig.savefig(path)


def write_classification_report(labels: Sequence[int], probs: Sequence[float], output_dir: str,
                                threshold: float = 0.5, extra: Optional[Dict] = None) -> dict:
    """Write ``metrics.json`` (the metrics plus ``extra``), ``confusion_matrix.png`` and ``roc_curve.png``."""
    os.makedirs(output_dir, exist_ok=True)
    metrics = classification_metrics(labels, probs, threshold)
    plot_confusion_matrix(metrics["confusion_matrix"], os.path.join(output_dir, "confusion_matrix.png"))
    plot_roc_curve(labels, probs, metrics["roc_auc"], os.path.join(output_dir, "roc_curve.png"))
    metrics = {**metrics, **(extra or {})}
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def format_metrics(metrics: dict) -> str:
    """A few lines for logs: headline numbers, then one line per class."""
    auc = metrics["roc_auc"]
    lines = [f"n={metrics['num_samples']} accuracy={metrics['accuracy']:.3f} "
             f"balanced_accuracy={metrics['balanced_accuracy']:.3f} "
             f"roc_auc={'n/a' if auc is None else f'{auc:.3f}'} majority_rate={metrics['majority_rate']:.3f}"]
    for name, values in metrics["per_class"].items():
        lines.append(f"  {name:<12} precision={values['precision']:.3f} recall={values['recall']:.3f} "
                     f"f1={values['f1']:.3f} support={values['support']}")
    return "\n".join(lines)
