"""tools/export_weights.py: a training checkpoint reduced to half-precision model weights that Detectron2's
checkpointer loads into a float32 model; bad input is one line and exit status 1. Checkpoint files that
cannot be read are named."""
import re

import numpy as np
import pytest
import torch
from cli import tool_main
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detector_testutils import tiny_cfg

from detectron2_myeloma.checkpoint import load_checkpoint
from detectron2_myeloma.utils.errors import InputError

export_weights = tool_main("export_weights")


def test_half_precision_weights_load_into_a_float32_model(tmp_path, capsys):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    DetectionCheckpointer(model, str(tmp_path), optimizer=optimizer).save("model_final", iteration=7)
    out = tmp_path / "model_fp16.pth"
    assert export_weights(["--input", str(tmp_path / "model_final.pth"), "--output", str(out)]) == 0
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert "optimizer" in torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert set(saved) == {"model"}  # no optimizer, scheduler or iteration
    assert saved["model"].keys() == model.state_dict().keys()
    assert {v.dtype for v in saved["model"].values() if v.is_floating_point()} == {torch.float16}
    fresh = build_model(cfg)
    DetectionCheckpointer(fresh).load(str(out))
    for key, value in fresh.state_dict().items():
        original = model.state_dict()[key]
        assert value.dtype == original.dtype, key
        expected = original.half().float() if original.is_floating_point() else original
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=key)
    assert "float16" in capsys.readouterr().out


def test_a_file_that_is_no_checkpoint_is_named(tmp_path, capsys):
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    assert export_weights(["--input", str(bad), "--output", str(tmp_path / "out.pth")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad}: not a readable PyTorch checkpoint (UnpicklingError)"]
    torch.save({"state_dict": {}}, bad)
    assert export_weights(["--input", str(bad), "--output", str(tmp_path / "out.pth")]) == 1
    assert 'no "model" state dict' in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


def test_what_is_not_a_weights_only_checkpoint_is_named(tmp_path):
    """Damaged files, Python objects (never unpickled: that could run code from the file) and files
    holding something else than a dict are each one InputError naming the file."""
    path = tmp_path / "weights.pth"
    torch.save({"model": {"w": torch.zeros(3)}}, path)
    data = path.read_bytes()
    for content, message in ((b"", "not a readable PyTorch checkpoint (EOFError)"),
                             (data[: len(data) // 2], "not a readable PyTorch checkpoint (RuntimeError)"),
                             (np.random.default_rng(0).bytes(4096), "not a readable PyTorch checkpoint")):
        path.write_bytes(content)
        with pytest.raises(InputError, match=f"^{re.escape(f'{path}: {message}')}"):
            load_checkpoint(str(path))
    torch.save({"model": {"w": torch.zeros(3)}, "seen": np.zeros(3)}, path)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: holds Python objects \(numpy\.\S+\) besides "
                                         "tensors, which are not loaded"):
        load_checkpoint(str(path))
    torch.save([torch.zeros(3)], path)
    with pytest.raises(InputError, match=f"^{re.escape(str(path))}: holds a list, not a checkpoint"):
        load_checkpoint(str(path))
