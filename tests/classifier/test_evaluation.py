"""Classification metrics: balanced accuracy averages the recall of the classes present, and the report
writes what it returns."""
import json

import pytest

from detectron2_myeloma.classifier.evaluation import (classification_metrics, format_metrics,
                                                      write_classification_report)


def test_metrics_of_a_small_case():
    metrics = classification_metrics([0, 0, 0, 1], [0.1, 0.6, 0.2, 0.9], threshold=0.5)
    assert metrics["accuracy"] == 0.75 and metrics["majority_rate"] == 0.75
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["roc_auc"] == 1.0
    assert metrics["confusion_matrix"] == [[2, 1], [0, 1]]
    assert metrics["per_class"]["myeloma"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
                                               "support": 1}


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_one_class_present():
    metrics = classification_metrics([0, 0, 0, 0], [0.1, 0.7, 0.2, 0.3], threshold=0.5)
    assert metrics["balanced_accuracy"] == 0.75  # the recall of the one class present
    assert metrics["roc_auc"] is None
    with pytest.raises(ValueError, match="as many labels"):
        classification_metrics([0, 1], [0.5])


def test_report_files(tmp_path):
    metrics = write_classification_report([0, 1, 1], [0.2, 0.4, 0.8], str(tmp_path), extra={"epoch": 3})
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics and metrics["epoch"] == 3
    for picture in ("confusion_matrix.png", "roc_curve.png"):
        assert (tmp_path / picture).stat().st_size > 0
    assert "balanced_accuracy=0.750" in format_metrics(metrics)
