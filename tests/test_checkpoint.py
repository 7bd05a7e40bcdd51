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
from detector_testutils import ADAPTIVE_HEAD, tiny_cfg

from detectron2_myeloma.checkpoint import MyelomaCheckpointer, load_checkpoint
from detectron2_myeloma.engine.trainer import Trainer
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


def test_a_mask_head_trained_on_a_frozen_detector_ships_alone_and_loads_on_its_base(tmp_path, capsys):
    """SOLVER.TRAINABLE_PREFIXES freezes all but the mask head; export_weights --only --base keeps the
    head; loading the small file gives the base's weights with the head's on top."""
    cfg = tiny_cfg({**ADAPTIVE_HEAD,
                    "SOLVER.TRAINABLE_PREFIXES": ["roi_heads.mask_head."]})
    torch.manual_seed(0)
    base = build_model(cfg)
    DetectionCheckpointer(base, str(tmp_path)).save("base")
    trained = Trainer.build_model(cfg)
    trainable = {n for n, p in trained.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("roi_heads.mask_head.") for n in trainable)
    assert trainable == {n for n, _ in trained.named_parameters() if n.startswith("roi_heads.mask_head.")}
    with torch.no_grad():
        for name, p in trained.named_parameters():
            p.copy_(base.state_dict()[name] if name not in trainable else torch.randn_like(p))
    DetectionCheckpointer(trained, str(tmp_path)).save("model_final")
    head = tmp_path / "head.pth"
    assert export_weights(["--input", str(tmp_path / "model_final.pth"), "--output", str(head), "--dtype", "float32",
                           "--only", "roi_heads.mask_head.", "--base", str(tmp_path / "base.pth")]) == 0
    saved = torch.load(head, weights_only=True)
    assert saved["base"] == str(tmp_path / "base.pth") and set(saved["model"]) == {
        k for k in trained.state_dict() if k.startswith("roi_heads.mask_head.")}
    fresh = build_model(tiny_cfg(ADAPTIVE_HEAD))
    MyelomaCheckpointer(fresh).load(str(head))
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, trained.state_dict()[key], rtol=0, atol=0, msg=key)
    with pytest.raises(SystemExit):  # --only needs --base
        export_weights(["--input", str(tmp_path / "model_final.pth"), "--output", str(head),
                        "--only", "roi_heads.mask_head."])
    with pytest.raises(ValueError, match=r"\['roi_heads.nothing'\]: no parameter"):
        Trainer.build_model(tiny_cfg({"SOLVER.TRAINABLE_PREFIXES": ["roi_heads.nothing"]}))


def test_a_weights_file_that_is_its_own_base_is_refused(tmp_path):
    path = tmp_path / "loop.pth"
    torch.save({"model": {}, "base": str(path)}, path)
    with pytest.raises(InputError, match="names itself as its base"):
        MyelomaCheckpointer(build_model(tiny_cfg())).load(str(path))
