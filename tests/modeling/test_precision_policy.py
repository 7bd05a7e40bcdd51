"""The precision policy: mixed precision only where the hardware runs it natively, with the config's
None / "auto", True and False, on faked CPUs and GPUs."""
import logging
import warnings

import pytest
import torch
from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.modeling import build_model

from detectron2_myeloma import load_config
from detectron2_myeloma.engine.trainer import CPUAMPTrainer
from detectron2_myeloma.engine.trainer import build_train_step
from detectron2_myeloma.modeling import precision
from detectron2_myeloma.modeling.precision import (
    CPUFeatures,
    CUDAFeatures,
    log_precision_policy,
    resolve_precision,
)

# (capability, AVX512-BF16, AMX, oneDNN bf16) as PyTorch reports them, and whether bfloat16 is native.
CPUS = {
    "AVX2 EPYC (issue #14)": (CPUFeatures("AVX2", False, False, False), False),
    "AVX-512 without BF16 (Skylake-SP)": (CPUFeatures("AVX512", False, False, True), False),
    "AVX512-BF16 (Zen 4, Cooper Lake)": (CPUFeatures("AVX512", True, False, True), True),
    "AMX (Sapphire Rapids)": (CPUFeatures("AVX512", True, True, True), True),
    "AVX512-BF16 with ATEN_CPU_CAPABILITY=avx2": (CPUFeatures("AVX2", True, False, True), False),
    "AVX512-BF16 with ONEDNN_MAX_CPU_ISA=AVX2": (CPUFeatures("AVX512", True, False, False), False),
}
AVX2, NATIVE = CPUS["AVX2 EPYC (issue #14)"][0], CPUS["AMX (Sapphire Rapids)"][0]


@pytest.fixture
def fake_cpu(monkeypatch):
    def use(features: CPUFeatures) -> None:
        monkeypatch.setattr(precision, "cpu_features", lambda: features)
    return use


@pytest.fixture
def fake_gpu(monkeypatch):
    def use(features: CUDAFeatures) -> None:
        monkeypatch.setattr(precision, "cuda_features", lambda device: features)
    return use


def project_cfg(*opts):
    """The shipped SegPC config with command-line style ``opts``, as tools/train_net.py merges them."""
    return load_config("configs/SegPC/rmask_rcnn_lite2_fpn.yaml", ["MODEL.DEVICE", "cpu", *opts])


@pytest.mark.parametrize("name", list(CPUS))
def test_auto_picks_bfloat16_only_on_a_cpu_with_native_bfloat16(fake_cpu, name):
    features, native = CPUS[name]
    fake_cpu(features)
    for setting in (None, "auto", "AUTO"):
        choice = resolve_precision(setting, "cpu")
        assert choice.dtype == (torch.bfloat16 if native else None), (name, setting)
        assert choice.warning is None
        assert features.capability in choice.reason


@pytest.mark.parametrize("name", list(CPUS))
def test_true_forces_bfloat16_and_false_forces_float32_on_every_cpu(fake_cpu, name):
    features, native = CPUS[name]
    fake_cpu(features)
    forced = resolve_precision(True, "cpu", "SOLVER.AMP.ENABLED")
    assert forced.dtype == torch.bfloat16
    assert (forced.warning is None) == native
    assert resolve_precision(False, "cpu").dtype is None


@pytest.mark.parametrize("value", ["yes", 1, "bf16"])
def test_a_value_that_is_none_of_the_three_is_refused_by_name(value):
    with pytest.raises(ValueError, match="TEST.AMP.ENABLED"):
        resolve_precision(value, "cpu", "TEST.AMP.ENABLED")


def test_the_shipped_config_defaults_to_auto_and_takes_every_value_from_the_command_line(fake_cpu):
    fake_cpu(AVX2)
    cfg = project_cfg()
    assert cfg.SOLVER.AMP.ENABLED is None and cfg.TEST.AMP.ENABLED is None
    assert not precision.training_precision(cfg).enabled and not precision.inference_precision(cfg).enabled
    # yacs lets None and a bool replace each other, so a YAML True can go back to auto and vice versa.
    cfg = project_cfg("SOLVER.AMP.ENABLED", "True", "TEST.AMP.ENABLED", "False")
    assert precision.training_precision(cfg).dtype == torch.bfloat16
    assert precision.inference_precision(cfg).dtype is None
    cfg.merge_from_list(["SOLVER.AMP.ENABLED", "None", "TEST.AMP.ENABLED", "True"])
    assert precision.training_precision(cfg).dtype is None
    assert precision.inference_precision(cfg).dtype == torch.bfloat16
    fake_cpu(NATIVE)
    cfg = project_cfg("SOLVER.AMP.ENABLED", "auto")
    assert precision.training_precision(cfg).dtype == torch.bfloat16


def test_forced_bfloat16_on_a_cpu_without_it_logs_a_warning(fake_cpu, caplog):
    fake_cpu(AVX2)
    cfg = project_cfg("SOLVER.AMP.ENABLED", "True")
    with caplog.at_level(logging.INFO, logger=precision.__name__):
        choices = log_precision_policy(cfg)
    info = [r for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(info) == 1 and "training bfloat16" in info[0].message and "inference float32" in info[0].message
    assert "AVX2" in info[0].message
    assert len(warnings) == 1 and "SOLVER.AMP.ENABLED=True" in warnings[0].message
    assert choices["training"].dtype == torch.bfloat16 and choices["inference"].dtype is None


def test_auto_and_forced_on_a_native_cpu_log_no_warning(fake_cpu, caplog):
    fake_cpu(NATIVE)
    with caplog.at_level(logging.INFO, logger=precision.__name__):
        log_precision_policy(project_cfg("TEST.AMP.ENABLED", "True"), training=False)
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "inference bfloat16" in caplog.records[0].message and "training" not in caplog.records[0].message


@pytest.mark.parametrize("gpu, auto, forced, warns", [
    (CUDAFeatures("NVIDIA H200", (9, 0), True), torch.bfloat16, torch.bfloat16, False),
    (CUDAFeatures("Tesla V100", (7, 0), False), torch.float16, torch.float16, False),
    (CUDAFeatures("Tesla P100", (6, 0), False), None, torch.float16, True),
])
def test_cuda_uses_bfloat16_where_supported_float16_otherwise_and_auto_needs_tensor_cores(
        fake_gpu, gpu, auto, forced, warns):
    fake_gpu(gpu)
    assert resolve_precision(None, "cuda").dtype == auto
    choice = resolve_precision(True, "cuda:0")
    assert choice.dtype == forced and choice.device_type == "cuda"
    assert (choice.warning is not None) == warns
    assert resolve_precision(False, "cuda").dtype is None


class _Loader:
    def __iter__(self):
        return iter(())


def test_the_training_step_follows_the_policy(fake_cpu, fake_gpu):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(*opts):
        return build_train_step(project_cfg(*opts), model, _Loader(), optimizer)

    fake_cpu(AVX2)
    assert type(step()) is SimpleTrainer
    assert type(step("SOLVER.AMP.ENABLED", "True")) is CPUAMPTrainer
    fake_cpu(NATIVE)
    assert type(step()) is CPUAMPTrainer
    assert type(step("SOLVER.AMP.ENABLED", "False")) is SimpleTrainer
    fake_gpu(CUDAFeatures("NVIDIA H200", (9, 0), True))
    with warnings.catch_warnings():  # GradScaler warns that this machine has no CUDA
        warnings.simplefilter("ignore")
        cuda_step = step("MODEL.DEVICE", "cuda")
    assert type(cuda_step) is AMPTrainer and cuda_step.precision == torch.bfloat16


def test_the_model_runs_inference_in_the_dtype_the_policy_picks(fake_cpu, make_cfg, batch):
    fpn_dtypes = []
    for features, dtype in ((AVX2, torch.float32), (NATIVE, torch.bfloat16)):
        fake_cpu(features)
        model = build_model(make_cfg({"TEST.AMP.ENABLED": None})).eval()
        model.backbone.fpn_output2.register_forward_hook(lambda m, i, out: fpn_dtypes.append(out.dtype))
        with torch.no_grad():
            model(batch[:1])
        assert fpn_dtypes.pop() == dtype
