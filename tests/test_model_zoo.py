"""Shipped models by short name: resolved wherever a path is taken, missing files named, and the shipped
detector's file is what its config builds (every weight loads, nothing left at its initial value)."""
import os

import pytest
import torch
from detectron2.modeling import build_model

from detectron2_myeloma import load_config, model_zoo
from detectron2_myeloma.checkpoint import MyelomaCheckpointer
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


DETECTORS = [name for name, model in model_zoo.SHIPPED_MODELS.items() if model.config_file]


@pytest.mark.parametrize("name", DETECTORS)
def test_each_shipped_detector_loads_completely(name):
    """Every weight of the model its config builds comes from its file, or from the base model its file
    names (a mask head shipped alone is a few MB, not another copy of the detector)."""
    path = model_zoo.get_weights(name)
    own = torch.load(path, map_location="cpu", weights_only=True)
    assert os.path.getsize(path) <= (40 if "base" not in own else 4) * 2**20
    assert {v.dtype for v in own["model"].values() if v.is_floating_point()} == {torch.float16}
    cfg = load_config(model_zoo.get_config_file(name), ["MODEL.WEIGHTS", name, "MODEL.DEVICE", "cpu",
                                                        "MODEL.TIMM.PRETRAINED", False])
    model = build_model(cfg)
    state = MyelomaCheckpointer(model)._torch_load(path)["model"]
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert expected <= set(state)  # nothing of the model is left untrained
    MyelomaCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    for key, value in model.state_dict().items():
        if key in state and value.is_floating_point():
            assert value.dtype == torch.float32, key  # loaded into the float32 model
            torch.testing.assert_close(value, state[key].float(), rtol=0, atol=0, msg=key)
