"""Bad input to the SegPC scorer and to ``make_submission --masks-in`` never passes silently: what the
official scorer would pass over is counted and reported, a submission with nothing to score is an error
printed as one line (exit status 1), and --strict makes every problem an error."""
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest

from detectron2_myeloma.data.segpc_format import (
    CYTOPLASM_VALUE,
    NUCLEUS_VALUE,
    format_submission_line,
    read_segpc_mask,
    resize_to_submission,
)
from detectron2_myeloma.evaluation.submission_score import score_submission
from detectron2_myeloma.evaluation.submission import write_masks_submission
from detectron2_myeloma.utils.errors import InputError
from cli import tool_main

REPO = Path(__file__).resolve().parents[2]
IMAGE_IDS = ("1997", "2009", "2032")  # 3 + 2 + 4 cells


@pytest.fixture(scope="module")
def y_dir(tmp_path_factory, segpc_mini) -> Path:
    folder = tmp_path_factory.mktemp("y")
    for image_id in IMAGE_IDS:
        for path in (segpc_mini / "y").glob(f"{image_id}_*.png"):
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def lines(y_dir) -> Dict[str, str]:
    """{image id: its perfect submission line}, built from the ground truth."""
    out = {}
    for image_id in IMAGE_IDS:
        masks = [read_segpc_mask(str(p)) for p in sorted(y_dir.glob(f"{image_id}_*.png"))]
        parts = [(resize_to_submission(m == NUCLEUS_VALUE), resize_to_submission(m == CYTOPLASM_VALUE))
                 for m in masks]
        out[image_id] = format_submission_line(image_id, parts)
    return out


def write(path: Path, rows: List[str]) -> Path:
    path.write_text("".join(row + "\n" for row in rows))
    return path


@pytest.fixture
def mixed(tmp_path, lines) -> Path:
    """1997 perfect (3 cells), 2009 malformed (2 cells), 9999 without ground truth, 2032 missing (4)."""
    return write(tmp_path / "submission.txt", [lines["1997"], "2009\t1,2;x,4 5,6", "9999\t1,2 3,4"])


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("DETECTRON2_MYELOMA_DEBUG", None)
    return subprocess.run([sys.executable, str(REPO / "tools" / f"{name}.py"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, expected_start: str, expected: str) -> None:
    """Exit status 1, no score printed, and the error as one short line (no traceback)."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("mIoU")]
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"error: {expected_start}: ") and expected in error, error
    assert len(error) < 400


def test_report_counts_each_kind_and_warns(y_dir, mixed, caplog):
    with caplog.at_level(logging.WARNING, logger="detectron2_myeloma.evaluation.submission_score"):
        score, report = score_submission(str(y_dir), str(mixed))
    assert score.miou == pytest.approx(3 / 9)  # the malformed 2009 and the missing 2032 score 0
    assert score.per_image["2009"]["mIoU"] == 0.0 and score.per_image["2032"]["mIoU"] == 0.0
    assert (report.lines, report.scored_lines) == (3, 1)
    assert report.missing == ["2032"]  # 2009 has a line, if a malformed one: not counted twice
    assert report.unknown == [(3, "9999")]
    assert [(err.line, err.image_id) for err in report.malformed] == [(2, "2009")]
    assert "only digits" in report.malformed[0].problem
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert any("1 ground-truth image without a line" in w and "2032" in w for w in warnings)


def test_cli_reports_problems_and_writes_into_a_new_folder(y_dir, mixed, tmp_path):
    output = tmp_path / "not" / "yet" / "scores.json"
    result = run_tool("score_segpc", "--gt", str(y_dir), "--submission", str(mixed), "--output", str(output))
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert printed[-1] == f"mIoU {3 / 9:.6f}"
    assert printed[-5] == f"{mixed}: 3 lines, 1 scored"
    assert printed[-4] == "  1 ground-truth image without a line (their cells score 0): 2032"
    assert printed[-3] == "  1 line whose image has no ground truth (ignored): line 3 (9999)"
    assert printed[-2].startswith("  1 malformed line (their images score 0): line 2, instance 1: ")
    checks = json.loads(output.read_text())["submission"]
    assert checks["gt_images_without_line"] == {"count": 1, "first": ["2032"]}
    assert checks["lines_without_gt"] == {"count": 1, "first": [{"line": 3, "image_id": "9999"}]}
    assert checks["malformed_lines"]["count"] == 1 and checks["malformed_lines"]["first"][0]["line"] == 2


@pytest.mark.parametrize("kind, expected", [
    ("missing", "1 ground-truth image without a line (their cells score 0): 2032"),
    ("unknown", "line 3: image 9999 has no ground truth"),
    ("malformed", "line 3, instance 1: pixel list may hold only digits"),
])
def test_strict_makes_each_kind_an_error(y_dir, lines, tmp_path, kind, expected):
    rows = {"missing": [lines["1997"], lines["2009"]],
            "unknown": [lines["1997"], lines["2009"], "9999\t1,2 3,4", lines["2032"]],
            "malformed": [lines["1997"], lines["2009"], "2032\t1,2 3,x"]}[kind]
    submission = write(tmp_path / "submission.txt", rows)
    result = run_tool("score_segpc", "--gt", str(y_dir), "--submission", str(submission), "--strict")
    assert_one_line_error(result, str(submission), expected)


@pytest.mark.parametrize("case, expected", [
    ("empty file", "no lines: the submission is empty"),
    ("id-only lines", "no instance on its 3 lines with ground truth (id-only lines): nothing to score"),
    ("no id with ground truth", "no line to score against"),
    ("tabs became spaces", "(fields separated by spaces, not tabs?)"),
    ("no such file", "no such file"),
])
def test_nothing_to_score_is_an_error(y_dir, lines, tmp_path, case, expected):
    rows = {"empty file": [],
            "id-only lines": list(IMAGE_IDS),
            "no id with ground truth": ["9999\t1,2 3,4", "8888"],
            "tabs became spaces": [lines[i].replace("\t", " ") for i in IMAGE_IDS],
            "no such file": None}[case]
    submission = tmp_path / "submission.txt"
    if rows is not None:
        write(submission, rows)
    result = run_tool("score_segpc", "--gt", str(y_dir), "--submission", str(submission))
    assert_one_line_error(result, str(submission), expected)


def test_empty_ground_truth_folder_is_an_error_not_nan(lines, tmp_path):
    empty = tmp_path / "y"
    empty.mkdir()
    submission = write(tmp_path / "submission.txt", [lines["1997"]])
    result = run_tool("score_segpc", "--gt", str(empty), "--submission", str(submission))
    assert "nan" not in result.stdout
    assert_one_line_error(result, str(empty), "no <image id>_<k> masks in it")


def test_output_folder_is_refused_before_scoring(y_dir, mixed, tmp_path, capsys):
    assert tool_main("score_segpc")(["--gt", str(y_dir), "--submission", str(mixed),
                                     "--output", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: {tmp_path}: is a folder; give the name of the file to write"
    assert "mIoU" not in captured.out


def test_masks_in_empty_folder_is_an_error_and_writes_nothing(tmp_path):
    empty = tmp_path / "y"
    empty.mkdir()
    output = tmp_path / "submission.txt"
    result = run_tool("make_submission", "--masks-in", str(empty), "--output", str(output))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"error: {empty}: no <image id>_<k> masks in it")
    assert not output.exists()


def test_masks_in_names_an_empty_mask_and_refuses_all_empty(y_dir, tmp_path, caplog):
    masks = tmp_path / "y"
    masks.mkdir()
    for path in y_dir.glob("1997_*.png"):
        shutil.copy(path, masks / path.name)
    blank = masks / "2009_1.png"
    cv2.imwrite(str(blank), np.zeros((1536, 2040), np.uint8))
    with caplog.at_level(logging.WARNING, logger="detectron2_myeloma.evaluation.submission"):
        stats = write_masks_submission(str(masks), str(tmp_path / "submission.txt"))
    assert (stats.instances, stats.dropped) == (3, 1)
    assert [r.getMessage() for r in caplog.records] == [
        f"{blank}: cell of 0 pixels, 0 at 1080x1440 (under 2): not submitted"]

    only_blank = tmp_path / "blank"
    only_blank.mkdir()
    shutil.copy(blank, only_blank / blank.name)
    output = tmp_path / "blank.txt"
    with pytest.raises(InputError, match="nothing to submit"):
        write_masks_submission(str(only_blank), str(output))
    assert not output.exists()
