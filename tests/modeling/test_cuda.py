"""The model's CUDA paths, run where PyTorch sees a GPU (``pytest -m cuda``; skipped elsewhere): autocast
inference chosen by the precision policy, giving the CPU's float32 answers within half-precision noise
(the cell-classifier hook on the GPU: tests/classifier/test_hook.py)."""
import pytest
import torch
from detector_testutils import cpu_and_cuda_twins
from testutils import assert_float32_fields, assert_twin_detections

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


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
