"""Issue 31's table: a row per evaluated run and seed with its nucleus mIoU, TTA runs read from their
"_TTA" results, runs not made yet listed by name, only the marked section rewritten."""
import json
import re

from benchmarks import outlines_nuclei
from benchmarks.tests.test_shipped_models import segpc_result


def write_evaluation(folder, results):
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text(json.dumps(results))


def test_rows_per_run_and_seed_and_the_missing_runs_named(tmp_path):
    run = tmp_path / "issue31"
    write_evaluation(run / "shipped_eval" / "inference", {"segpc_lowres_val": segpc_result(0.902)})
    for seed, miou in ((1, 0.903), (2, 0.905)):
        nucleus = {**segpc_result(miou)}
        nucleus["segpc"] = {**nucleus["segpc"], "nucleus_mIoU": 0.8 + seed / 100}
        write_evaluation(run / f"point_nucleus_s{seed}" / "inference", {"segpc_lowres_val": nucleus})
    write_evaluation(run / "point_nucleus_s1_tta8" / "inference_TTA", {"segpc_lowres_val_TTA": segpc_result(0.911)})
    write_evaluation(run / "whole_d96_s1" / "inference", {"segpc_lowres_val": segpc_result(0.915)})
    doc = tmp_path / "RESULTS.md"
    doc.write_text("intro\n<!-- outlines-nuclei:begin -->\nold\n<!-- outlines-nuclei:end -->\nend\n")
    assert outlines_nuclei.main(["--run", str(run), "--report", str(doc)]) == 0
    text = doc.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("end\n")
    rows = [line for line in text.splitlines() if line.startswith("| `segpc_lowres_val`")]
    assert len(rows) == 5
    assert "estimation rule" in rows[0] and re.search(r"\|\s*n/a\s*\|", rows[0])
    assert "seed 1" in rows[1] and "0.903" in rows[1] and "0.810" in rows[1]
    assert "seed 2" in rows[2] and "0.905" in rows[2] and "0.820" in rows[2]
    assert "whole nucleus model at 96 px" in rows[3] and "0.915" in rows[3]
    assert "TTA" in rows[4] and "0.911" in rows[4]
    assert "Not run yet:" in text and "ft_s2/inference" in text and "nucleus_s1_tta8" in text
    assert "--config-file configs/SegPC/rmask_rcnn_lite2_fpn_d80_point_nucleus.yaml SEED 2" in text
    assert ('_whole.yaml INPUT.CELL_DIAMETER.TRAIN "(86.4, 91.2, 96.0, 100.8, 105.6)" '
            'INPUT.CELL_DIAMETER.TEST 96 SEED 1`') in text
    assert "whole_d112_s1/inference" in text.split("Not run yet:")[1]


def test_no_run_at_all_is_an_error(tmp_path, capsys):
    doc = tmp_path / "RESULTS.md"
    doc.write_text("<!-- outlines-nuclei:begin -->\n<!-- outlines-nuclei:end -->\n")
    assert outlines_nuclei.main(["--run", str(tmp_path / "nothing"), "--report", str(doc)]) == 1
    assert "no evaluation" in capsys.readouterr().err
