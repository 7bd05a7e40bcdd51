import os

import pytest

from detectron2_myeloma.utils.atomic import write_atomic


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
