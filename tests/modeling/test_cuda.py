"""The model's CUDA paths, run where PyTorch sees a GPU (``pytest -m cuda``; skipped elsewhere): autocast
inference chosen by the precision policy, the cell-classifier hook on the GPU, and the same weights
giving the CPU's float32 answers within half-precision noise."""
import pytest
import torch
from detectron2.modeling import build_model
from test_cell_classifier_hook import hooked_cfg, model_input, original  # noqa: F401  (fixture)
from testutils import assert_float32_fields, assert_twin_detections, write_tiny_classifier

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def cpu_and_cuda_twins(cfg_cpu, cfg_cuda):
    torch.manual_seed(0)
    cpu = build_model(cfg_cpu).eval()
    cuda = build_model(cfg_cuda).eval()
    cuda.load_state_dict(cpu.state_dict())
    return cpu, cuda


def test_cuda_autocast_inference_matches_cpu_float32(make_cfg, batch):
    cpu, cuda = cpu_and_cuda_twins(make_cfg(), make_cfg({"MODEL.DEVICE": "cuda", "TEST.AMP.ENABLED": None}))
    if torch.cuda.get_device_capability() >= (7, 0):
        assert cuda.inference_dtype in (torch.float16, torch.bfloat16)
    with torch.no_grad():
        for a, b in zip(cpu(batch), cuda(batch)):
            assert b["instances"].scores.device.type == "cuda"
            other = b["instances"].to("cpu")
            assert_float32_fields(other)
            assert_twin_detections(other, a["instances"])


def test_cell_classifier_hook_on_cuda_matches_cpu(make_cfg, original, tmp_path):  # noqa: F811
    path = str(write_tiny_classifier(tmp_path / "model_best.pth"))
    on_cuda = {"MODEL.POST_HOOKS": ["CellClassifierHook"], "MODEL.CELL_CLASSIFIER.WEIGHTS": path, "MODEL.DEVICE": "cuda"}
    cpu, cuda = cpu_and_cuda_twins(hooked_cfg(make_cfg, path), make_cfg(on_cuda))
    assert next(cuda.post_hooks[0].classifier.parameters()).device.type == "cuda"
    with torch.no_grad():
        reference, = cpu([model_input(original)])
        labelled, = cuda([model_input(original)])
    reference, labelled = reference["instances"], labelled["instances"].to("cpu")
    assert_float32_fields(labelled)
    twin = assert_twin_detections(labelled, reference)
    cells = labelled.pred_classes[:5] == 0
    torch.testing.assert_close(labelled.pred_cell_probs[:5][cells], reference.pred_cell_probs[twin][cells],
                               rtol=0, atol=0.02)
