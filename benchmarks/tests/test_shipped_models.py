"""The shipped models' tables: every evaluated model and set becomes a row with its own numbers, absent
runs are left out, and only the marked sections of the report change."""
import json

from benchmarks import shipped_models


def segpc_result(miou: float) -> dict:
    return {"segm": {"AP": 70.0, "AP50": 90.0, "AP75": 80.0},
            "segpc": {"mIoU": miou, "missed_cells": 2, "loss_missed": 0.05, "merged_cells": 1,
                      "loss_merged": 0.02, "loss_boundary": 1 - miou - 0.07}}


def test_tables_fill_the_marked_sections(tmp_path):
    run = tmp_path / "ship"
    shipped = run / "eval_model_fp16" / "inference"
    shipped.mkdir(parents=True)
    (shipped / "evaluation.json").write_text(json.dumps({"segpc_mini_val": segpc_result(0.912),
                                                         "segpc_lowres_val": segpc_result(0.887)}))
    report = run / "classifier_eval" / "nikon_val"
    report.mkdir(parents=True)
    (report / "metrics.json").write_text(json.dumps({
        "accuracy": 0.9, "balanced_accuracy": 0.85, "roc_auc": 0.95, "confusion_matrix": [[5, 1], [2, 12]],
        "per_class": {"myeloma": {"support": 14}, "non_myeloma": {"support": 6}}}))
    doc = tmp_path / "RESULTS.md"
    doc.write_text("intro\n<!-- shipped-detector:begin -->\nold\n<!-- shipped-detector:end -->\nmiddle\n"
                   "<!-- shipped-classifier:begin -->\n<!-- shipped-classifier:end -->\nend\n")
    assert shipped_models.main(["--run", str(run), "--report", str(doc)]) == 0
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("end\n")
    rows = [line for line in text.splitlines() if line.startswith("| `segpc")]
    assert len(rows) == 2  # one model evaluated on two sets; the float32 and 10-image runs are absent
    assert "0.912" in rows[0] and "segpc_mini_val" in rows[0] and "2 / 0.050" in rows[0]
    assert "0.887" in rows[1] and "segpc_lowres_val" in rows[1]
    classifier = [line for line in text.splitlines() if line.startswith("| segpc_nikon_val")]
    assert len(classifier) == 1 and "14 / 6" in classifier[0] and "0.850" in classifier[0]
