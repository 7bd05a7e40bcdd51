import os

import pytest
from testutils import unwritable_folder

from detectron2_myeloma.utils.atomic import OUTPUT_MARKER, OutputFolder, check_output_file, write_atomic
from detectron2_myeloma.utils.errors import InputError


def test_text_and_bytes_replace_the_file_with_usual_permissions(tmp_path):
    path = tmp_path / "new" / "a.md"
    write_atomic(str(path), "é\n")
    assert path.read_bytes() == "é\n".encode("utf-8")
    write_atomic(str(path), b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(path.parent) == ["a.md"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(str(path), 42)  # neither text nor bytes: fails while writing
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.json"]


def test_output_folder_replaces_an_earlier_run_whole(tmp_path):
    out = tmp_path / "pred"
    with OutputFolder(str(out), tool="predict") as partial:
        for name in ("a_overlay.png", "b_overlay.png", "summary.csv"):
            (tmp_path / partial / name).write_text("first")
    assert sorted(os.listdir(out)) == sorted([OUTPUT_MARKER, "a_overlay.png", "b_overlay.png", "summary.csv"])
    with pytest.raises(InputError, match="not empty.*--overwrite"):
        OutputFolder(str(out))
    with OutputFolder(str(out), overwrite=True) as partial:
        (tmp_path / partial / "summary.csv").write_text("second")
    assert sorted(os.listdir(out)) == [OUTPUT_MARKER, "summary.csv"]  # no stale b_overlay.png
    assert (out / "summary.csv").read_text() == "second"
    assert sorted(os.listdir(tmp_path)) == ["pred"]  # no partial or old folder left


def test_failed_run_leaves_the_earlier_results(tmp_path):
    out = tmp_path / "pred"
    with OutputFolder(str(out)) as partial:
        (tmp_path / partial / "summary.csv").write_text("first")
    with pytest.raises(RuntimeError):
        with OutputFolder(str(out), overwrite=True) as partial:
            (tmp_path / partial / "summary.csv").write_text("half")
            raise RuntimeError("crash")
    assert (out / "summary.csv").read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["pred"]


def test_overwrite_never_replaces_a_folder_the_project_did_not_write(tmp_path):
    (tmp_path / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="not a folder this project wrote"):
        OutputFolder(str(tmp_path), overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        OutputFolder(str(tmp_path / "file"))
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_an_unwritable_place_is_refused_when_the_output_is_made(tmp_path):
    """Found before any work, by trying (root ignores permission bits): one line naming the path and
    the folder that refuses it, and nothing created."""
    with unwritable_folder(tmp_path / "locked") as locked:
        for path in (locked / "out", locked / "new" / "out"):
            with pytest.raises(InputError) as err:
                OutputFolder(str(path))
            assert str(err.value).startswith(f"{path}: cannot write in {locked}: ")
            with pytest.raises(InputError, match=f"^{path / 'a.txt'}: cannot write in {locked}: "):
                check_output_file(str(path / "a.txt"))
        assert os.listdir(locked) == []
