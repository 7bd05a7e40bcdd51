"""CPU mixed precision: the forward pass runs in bfloat16, the weights and their update stay float32."""
import itertools

import torch
from detectron2.utils.events import EventStorage
from torch import nn

from detectron2_myeloma.engine.trainer import CPUAMPTrainer
from detectron2_myeloma.modeling.precision import autocast


class _Regression(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.forward_dtypes = []

    def forward(self, batch):
        x, y = batch
        out = self.linear(x)
        self.forward_dtypes.append(out.dtype)
        return {"loss_mse": ((out.float() - y) ** 2).mean()}


def test_cpu_amp_step_runs_forward_in_bf16_and_updates_fp32_weights():
    torch.manual_seed(0)
    model = _Regression().train()
    x = torch.randn(16, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    loader = itertools.repeat((x, y))
    trainer = CPUAMPTrainer(model, loader, torch.optim.SGD(model.parameters(), lr=0.05))
    before = model.linear.weight.detach().clone()
    losses = []
    with EventStorage(0) as storage:
        trainer.storage = storage
        for trainer.iter in range(30):
            trainer.run_step()
            losses.append(storage.history("total_loss").latest())
    assert set(model.forward_dtypes) == {torch.bfloat16}
    assert model.linear.weight.dtype == torch.float32
    assert not torch.equal(model.linear.weight, before)
    assert losses[-1] < 0.2 * losses[0]


def test_autocast_is_a_no_op_for_float32():
    linear = nn.Linear(4, 4)
    with autocast("cpu", None):
        assert linear(torch.randn(2, 4)).dtype == torch.float32
    with autocast("cpu", torch.bfloat16):
        assert linear(torch.randn(2, 4)).dtype == torch.bfloat16
