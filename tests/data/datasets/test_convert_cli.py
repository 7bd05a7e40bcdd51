"""tools/convert_to_coco.py as a user runs it: a known user error is one line on stderr and exit 1 with
nothing written, success prints its summary once after a progress bar."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def convert(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("DETECTRON2_MYELOMA_DEBUG", None)
    return subprocess.run([sys.executable, str(REPO / "tools" / "convert_to_coco.py"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line, which must end stderr (after any progress bar), with no traceback."""
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def test_output_that_is_a_folder(tiny_segpc, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    result = convert("--format", "segpc", "--input", str(tiny_segpc), "--output", str(folder))
    assert error_line(result).startswith(f"error: {folder}: is a folder")
    assert os.listdir(folder) == []


def test_output_below_a_file(tiny_segpc, tmp_path):
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" / "out.json"
    result = convert("--format", "segpc", "--input", str(tiny_segpc), "--output", str(out))
    assert error_line(result).startswith(f"error: {out}: cannot be written, {tmp_path / 'taken'} "
                                         "is a file")


def test_coco_without_image_root(tmp_path):
    source = tmp_path / "in.json"
    source.write_text('{"images": [], "annotations": [], "categories": []}')
    out = tmp_path / "out.json"
    result = convert("--format", "coco", "--input", str(source), "--output", str(out))
    assert error_line(result).startswith("error: --image-root is required with --format coco")
    assert not out.exists()


def test_empty_segpc_folder(tmp_path):
    (tmp_path / "segpc" / "x").mkdir(parents=True)
    out = tmp_path / "out.json"
    result = convert("--format", "segpc", "--input", str(tmp_path / "segpc"), "--output", str(out))
    line = error_line(result)
    assert line.startswith(f"error: {tmp_path / 'segpc' / 'x'}: no image to convert (expected <id>.<ext> images")
    assert line.endswith(f"; nothing was written to {out}")
    assert not out.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short"], ids=["empty_file", "truncated_zip"])
def test_corrupt_pptx(tmp_path, content):
    deck = tmp_path / "deck.pptx"
    deck.write_bytes(content)
    out = tmp_path / "out" / "mimm.json"
    result = convert("--format", "pptx", "--input", str(deck), "--output", str(out))
    assert error_line(result).startswith(f"error: {deck}: not a PowerPoint .pptx file (not a zip archive")
    assert "Package not found" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_success_prints_progress_and_the_summary_once(tiny_segpc, tmp_path):
    out = tmp_path / "out.json"
    result = convert("--format", "segpc", "--input", str(tiny_segpc), "--output", str(out))
    assert result.returncode == 0, result.stderr
    summary = "3 images, 3 instances, 0 skipped"
    assert (result.stdout + result.stderr).count(summary) == 1
    assert result.stdout.splitlines()[-1] == f"wrote {out}: {summary}"
    assert "images: 100%" in result.stderr and "3/3" in result.stderr  # the progress bar over images
