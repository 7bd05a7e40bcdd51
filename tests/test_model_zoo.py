"""Shipped models by short name: resolved wherever a path is taken, missing files named, and the shipped
detector's file is what its config builds (every weight loads, nothing left at its initial value)."""
import os

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from detectron2_myeloma import load_config, model_zoo
from detectron2_myeloma.utils.errors import InputError


def test_short_names_resolve_and_paths_pass_through(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_MYELOMA_MODELS", str(tmp_path))
    name = model_zoo.DEFAULT_DETECTOR
    with pytest.raises(InputError, match=f"{tmp_path}.*weights of the shipped model '{name}' not found"):
        model_zoo.resolve_weights(name)
    weights = tmp_path / model_zoo.get(name).weights
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    assert model_zoo.resolve_weights(name) == str(weights)
    assert model_zoo.resolve_weights("output/model_final.pth") == "output/model_final.pth"
    assert model_zoo.resolve_weights("") == ""
    cfg = load_config(model_zoo.get_config_file(name), ["MODEL.WEIGHTS", name])
    assert cfg.MODEL.WEIGHTS == str(weights)
    with pytest.raises(InputError, match="'nope' is not a shipped model"):
        model_zoo.get("nope")


def test_the_shipped_detector_loads_completely():
    name = model_zoo.DEFAULT_DETECTOR
    path = model_zoo.get_weights(name)
    assert os.path.getsize(path) <= 40 * 2**20
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    cfg = load_config(model_zoo.get_config_file(name), ["MODEL.WEIGHTS", name, "MODEL.DEVICE", "cpu",
                                                        "MODEL.TIMM.PRETRAINED", False])
    model = build_model(cfg)
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert expected <= set(state)  # nothing of the model is left untrained
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    for key, value in model.state_dict().items():
        if key in state and value.is_floating_point():
            assert value.dtype == torch.float32, key  # loaded into the float32 model
            torch.testing.assert_close(value, state[key].float(), rtol=0, atol=0, msg=key)
