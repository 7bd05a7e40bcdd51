"""Channel/spatial attention: identity at initialisation, gates that mean what they say."""
import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from detectron2_myeloma.modeling.attention import (
    ChannelAttention,
    SpatialAttention,
    attention_gate,
    build_attention,
)
from detectron2_myeloma.modeling.panet_fpn import PANetFPN

ORDERS = ["CA", "SA", "CA-SA", "SA-CA"]


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
@pytest.mark.parametrize("order", ORDERS)
def test_attention_is_identity_at_init(order, gate):
    torch.manual_seed(0)
    x = torch.randn(2, 32, 12, 10) * 3
    module = build_attention(order, 32, gate=gate, reduction=4, use_max_pool=True, kernel_size=5)
    torch.testing.assert_close(module(x), x, rtol=1e-6, atol=1e-6)
    assert list(dict(module.named_children())) == order.lower().split("-")


def test_training_starts_from_the_identity():
    """At init only the zero-initialised last convs get a gradient; the channel MLP's first conv
    follows once they have moved (the documented price of an exact identity)."""
    torch.manual_seed(0)
    x = torch.rand(2, 16, 8, 8)
    module = build_attention("CA-SA", 16, reduction=2)
    (module(x) * torch.randn_like(x)).sum().backward()
    assert module.ca.fc2.weight.grad.abs().sum() > 0
    assert module.sa.conv.weight.grad.abs().sum() > 0
    assert module.ca.fc1.weight.grad.abs().sum() == 0


def test_none_builds_nothing():
    assert build_attention("NONE", 32) is None


def test_softmax_gates_average_to_one_and_sigmoid_gates_lie_in_0_2():
    logits = torch.randn(3, 8, 5, 7) * 4
    channel = attention_gate(logits[:, :, :1, :1], "softmax", dims=(1,))
    spatial = attention_gate(logits[:, :1], "softmax", dims=(2, 3))
    torch.testing.assert_close(channel.mean(dim=1), torch.ones(3, 1, 1))
    torch.testing.assert_close(spatial.mean(dim=(2, 3)), torch.ones(3, 1))
    sigmoid = attention_gate(logits, "sigmoid", dims=(1,))
    assert sigmoid.min() > 0 and sigmoid.max() < 2
    torch.testing.assert_close(attention_gate(torch.zeros(2, 3), "sigmoid", dims=(1,)), torch.ones(2, 3))


def test_trained_attention_reweights_channels_and_positions():
    torch.manual_seed(0)
    x = torch.rand(1, 8, 6, 6)
    channel = ChannelAttention(8, reduction=2, use_max_pool=True, gate="softmax")
    torch.nn.init.normal_(channel.fc2.weight)
    gate = channel(x) / x  # one value per channel
    assert torch.allclose(gate, gate[:, :, :1, :1].expand_as(gate))
    assert gate.std() > 0.01
    spatial = SpatialAttention(kernel_size=3, gate="sigmoid")
    torch.nn.init.normal_(spatial.conv.weight)
    gate = spatial(x) / x  # one value per position
    assert torch.allclose(gate, gate[:, :1].expand_as(gate))
    assert gate.std() > 0.01
    # The gate ignores the feature scale (up to the normalisation's epsilon).
    torch.testing.assert_close(spatial(10 * x), 10 * spatial(x), rtol=1e-2, atol=1e-2)
    assert SpatialAttention(gate="softmax").conv.bias is None  # a softmax ignores a shared shift


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_backbone_with_attention_equals_backbone_without_at_init(make_cfg, gate):
    """FPN-AM and B-U-AM start as identities, so pretrained features pass through unchanged."""
    overrides = {"MODEL.RMASK.BOTTOM_UP_PATH": True, "MODEL.RMASK.ATTENTION_GATE": gate}
    with_attention = build_backbone(
        make_cfg({**overrides, "MODEL.RMASK.FPN_ATTENTION": "CA-SA", "MODEL.RMASK.BU_ATTENTION": "SA-CA"}),
        ShapeSpec(channels=3),
    )
    without = build_backbone(make_cfg(overrides), ShapeSpec(channels=3))
    assert isinstance(with_attention, PANetFPN)
    missing, unexpected = without.load_state_dict(with_attention.state_dict(), strict=False)
    assert not missing and all("attention" in name for name in unexpected)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ours, reference = with_attention(x), without(x)
    assert list(ours) == list(reference) == ["p2", "p3", "p4", "p5", "p6"]
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-6, atol=1e-6)
