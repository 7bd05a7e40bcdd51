"""CPU training: denormal flushing and the bfloat16 mixed-precision step.

Detectron2's ``AMPTrainer`` asserts CUDA and scales float16 gradients with CUDA's ``GradScaler``.
bfloat16 keeps float32's exponent range, so gradients cannot underflow the way float16 ones do and
the plain SGD step is correct. Whether bfloat16 is used at all is the precision policy's choice
(:mod:`detectron2_myeloma.modeling.precision`).
"""
import time

import torch
from detectron2.engine import SimpleTrainer

from ..modeling.precision import autocast


def configure_cpu_math() -> None:
    """Flush denormal floats to zero (process-wide: call it from entry points). Late in training, tiny
    gradients and activations become denormals, which x86 CPUs compute on a microcode path tens of
    times slower (the profiled cost: docs/RESULTS.md). No effect on CUDA."""
    torch.set_flush_denormal(True)


class CPUAMPTrainer(SimpleTrainer):
    """``SimpleTrainer`` whose forward pass runs under CPU bfloat16 autocast.

    Only the forward pass is autocast (PyTorch's guidance): backward ops run in the dtype their forward
    op used, and the optimizer updates the float32 master weights.
    """

    def run_step(self) -> None:
        assert self.model.training, "[CPUAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with autocast("cpu", torch.bfloat16):
            loss_dict = self.model(data)
        losses = sum(loss.float() for loss in loss_dict.values())
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        losses.backward()
        self.after_backward()
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()
