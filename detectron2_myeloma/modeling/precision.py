"""The precision policy: which stage of R-Mask R-CNN runs in which dtype, on which hardware.

Mixed precision is a speed switch only where the hardware has native low-precision arithmetic;
elsewhere it is emulated and several times slower than float32 (benchmarks/RESULTS.md, "Float32 and
bfloat16 side by side"). ``SOLVER.AMP.ENABLED`` (training) and ``TEST.AMP.ENABLED`` (inference)
therefore take three values:

- ``None`` or ``"auto"`` (the default): mixed precision where the device runs it natively:
  CUDA with tensor cores (compute capability 7.0 or higher): bfloat16 where the GPU supports it,
  float16 otherwise; a CPU whose PyTorch build dispatches AVX-512 kernels and that has AVX512-BF16 or
  AMX-BF16, with oneDNN able to use them: bfloat16. Anything else: float32.
- ``True``: mixed precision whatever the device (a warning is logged where it is not native).
- ``False``: float32.

When mixed precision is on, the stages of the model run as follows (the modules call the helpers
below, so this table is the whole story):

============================  ===========================  ===========================
stage                         CPU                          CUDA
============================  ===========================  ===========================
timm bottom-up body           float32 (bfloat16 depthwise  autocast dtype
                              convolutions take a slow
                              per-group path on the CPU)
FPN, PANet path, attention,   bfloat16                     autocast dtype
RPN
RoI pooling                   float32 (``ROIAlign`` casts boxes to the features' dtype: bfloat16
                              boxes are off by up to 2 px at 512 px)
box and mask heads            training: autocast dtype; inference: float32 (in bfloat16 their
                              scores and masks cost segm AP: docs/RESULTS.md)
cell classifier post-hook     float32 (an EfficientNet,    autocast dtype
                              as the body)
what inference returns        float32
============================  ===========================  ===========================

Gradients of a bfloat16 forward need no scaler (float32's exponent range); float16 ones do, which
Detectron2's ``AMPTrainer`` provides on CUDA.
"""
import contextlib
import logging
from dataclasses import dataclass
from typing import ContextManager, Dict, Optional, Union

import torch
from detectron2.config import CfgNode
from detectron2.structures import Instances

logger = logging.getLogger(__name__)

AmpSetting = Union[None, bool, str]
AUTO = "auto"


@dataclass(frozen=True)
class CPUFeatures:
    """What PyTorch reports about this CPU's low-precision arithmetic."""

    capability: str  # ATen's kernel dispatch level: torch.backends.cpu.get_cpu_capability()
    avx512_bf16: bool
    amx_bf16: bool  # AMX tiles (AMX-BF16 comes with them on every CPU that has them)
    onednn_bf16: bool  # oneDNN, which runs the convolutions, can use native bfloat16 instructions

    @property
    def native_bf16(self) -> bool:
        return self.capability.startswith("AVX512") and (self.avx512_bf16 or self.amx_bf16) and self.onednn_bf16

    def describe(self) -> str:
        flags = [name for name, present in (("AVX512-BF16", self.avx512_bf16), ("AMX", self.amx_bf16)) if present]
        onednn = "oneDNN bf16" if self.onednn_bf16 else "no oneDNN bf16"
        return f"CPU {self.capability}, {'+'.join(flags) or 'no AVX512-BF16/AMX'}, {onednn}"


def cpu_features() -> CPUFeatures:
    """This CPU as PyTorch's own capability queries see it. ``ATEN_CPU_CAPABILITY=avx2`` and
    ``ONEDNN_MAX_CPU_ISA=AVX2`` make an AVX-512 CPU look (and run) like an AVX2 one."""
    return CPUFeatures(
        capability=torch.backends.cpu.get_cpu_capability(),
        avx512_bf16=torch.cpu._is_avx512_bf16_supported(),
        amx_bf16=torch.cpu._is_amx_tile_supported(),
        onednn_bf16=bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    )


@dataclass(frozen=True)
class CUDAFeatures:
    name: str
    compute_capability: tuple
    bf16: bool

    @property
    def tensor_cores(self) -> bool:
        return tuple(self.compute_capability) >= (7, 0)

    def describe(self) -> str:
        major, minor = self.compute_capability
        return f"{self.name} (compute capability {major}.{minor}{', bf16' if self.bf16 else ''})"


def cuda_features(device: torch.device) -> CUDAFeatures:
    return CUDAFeatures(name=torch.cuda.get_device_name(device),
                        compute_capability=torch.cuda.get_device_capability(device),
                        bf16=torch.cuda.is_bf16_supported())


@dataclass(frozen=True)
class Precision:
    """The dtype a stage of work runs in on one device: ``dtype`` None is float32 throughout."""

    device_type: str
    dtype: Optional[torch.dtype]
    reason: str
    warning: Optional[str] = None  # set when mixed precision was forced where it is not native

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def dtype_name(self) -> str:
        return _name(self.dtype)

    def describe(self) -> str:
        return f"{self.dtype_name} ({self.reason})"


def resolve_precision(setting: AmpSetting, device: Union[str, torch.device], key: str = "AMP.ENABLED") -> Precision:
    """The precision for ``setting`` (None / "auto", True or False; ``key`` names it in messages) on
    ``device``, chosen as the module docstring says."""
    if isinstance(setting, str) and setting.lower() == AUTO:
        setting = None
    if not (setting is None or isinstance(setting, bool)):  # 1 == True, but 1 is a typo here
        raise ValueError(f"{key}={setting!r}: expected None or 'auto' (chosen by the hardware), True or False")
    device = torch.device(device)
    if setting is False:
        return Precision(device.type, None, f"{key}=False")
    label = f"{key}={'auto' if setting is None else 'True'}"
    if device.type == "cuda":
        gpu = cuda_features(device)
        hardware, native = gpu.describe(), gpu.tensor_cores
        dtype = torch.bfloat16 if gpu.bf16 else torch.float16
    elif device.type == "cpu":
        cpu = cpu_features()
        hardware, native, dtype = cpu.describe(), cpu.native_bf16, torch.bfloat16
    else:
        hardware, native, dtype = f"device {device.type}", False, torch.bfloat16
    if native:
        return Precision(device.type, dtype, f"{label}: {hardware}: native {_name(dtype)}")
    if setting is None:
        return Precision(device.type, None, f"{label}: {hardware}: no native mixed precision")
    warning = (f"{key}=True on {hardware}, which has no native {_name(dtype)}: mixed precision runs slower "
               f"than float32 here (several times on a CPU); set {key} to 'auto' or False")
    return Precision(device.type, dtype, f"{label}: {hardware}: forced", warning)


def _name(dtype: Optional[torch.dtype]) -> str:
    return "float32" if dtype is None else str(dtype).replace("torch.", "")


def training_precision(cfg: CfgNode) -> Precision:
    return resolve_precision(cfg.SOLVER.AMP.ENABLED, cfg.MODEL.DEVICE, "SOLVER.AMP.ENABLED")


def inference_precision(cfg: CfgNode) -> Precision:
    return resolve_precision(cfg.TEST.AMP.ENABLED, cfg.MODEL.DEVICE, "TEST.AMP.ENABLED")


def log_precision_policy(cfg: CfgNode, training: bool = True) -> Dict[str, Precision]:
    """Log, in one line, the precision chosen for training (when ``training``) and inference and why;
    a forced choice that is not native is also logged as a warning. Returns the choices by stage."""
    choices = {"training": training_precision(cfg)} if training else {}
    choices["inference"] = inference_precision(cfg)
    logger.info("Precision on %s: %s", cfg.MODEL.DEVICE,
                "; ".join(f"{stage} {choice.describe()}" for stage, choice in choices.items()))
    for warning in dict.fromkeys(c.warning for c in choices.values() if c.warning):
        logger.warning(warning)
    return choices


# --- the stages of the table above ---------------------------------------------------------------
def autocast(device_type: str, dtype: Optional[torch.dtype]) -> ContextManager:
    """Autocast to ``dtype`` on ``device_type``; a no-op for ``dtype`` None (float32)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


def body_precision(device: torch.device) -> ContextManager:
    """Around the timm bottom-up body: autocast off on the CPU, unchanged elsewhere."""
    return torch.autocast("cpu", enabled=False) if device.type == "cpu" else contextlib.nullcontext()


def pooled_features(features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The feature maps the RoI heads pool from, in float32: {name: (N, C, H, W)} of any float dtype -> the
    same shapes in float32 (a map already float32 is returned as is, not copied)."""
    return {name: feature.float() for name, feature in features.items()}


def roi_heads_precision(device: torch.device, training: bool) -> ContextManager:
    """Around the box and mask heads: the surrounding autocast while training, float32 at inference."""
    return torch.autocast(device.type, enabled=training and torch.is_autocast_enabled(device.type))


def float32_fields(instances: Instances) -> Instances:
    """``instances`` with every reduced-precision floating tensor field cast to float32, so that what
    leaves an autocast inference (scores, mask probabilities) looks as it does without autocast.

    Shapes are unchanged; fields that are not tensors (``Boxes``...) are left as they are. Changes
    ``instances`` in place and returns it."""
    for name, value in instances.get_fields().items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
            instances.set(name, value.float())
    return instances
