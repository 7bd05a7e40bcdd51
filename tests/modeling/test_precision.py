"""Speed switches of GeneralizedRCNNWithPostHooks that must not change what it computes: channels-last memory format and
autocast inference (bfloat16 on the CPU)."""
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from testutils import assert_float32_fields, assert_twin_detections, detection_pairs


def twin_models(make_cfg, **overrides):
    """A model with the default settings and one with ``overrides``, holding the same weights."""
    torch.manual_seed(0)
    reference = build_model(make_cfg())
    other = build_model(make_cfg(overrides))
    other.load_state_dict(reference.state_dict())
    return reference, other


def test_channels_last_changes_the_layout_not_the_results(make_cfg, batch):
    reference, model = twin_models(make_cfg, **{"MODEL.CHANNELS_LAST": True})
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not reference.backbone.fpn_output2.weight.is_contiguous(memory_format=torch.channels_last)
    images = model.preprocess_image(batch)
    assert images.tensor.is_contiguous(memory_format=torch.channels_last)

    with EventStorage(0):
        torch.manual_seed(1)
        losses = model(batch)
        torch.manual_seed(1)
        reference_losses = reference(batch)
    for name, value in reference_losses.items():
        torch.testing.assert_close(losses[name], value, rtol=1e-4, atol=1e-5, msg=name)

    for a, b in detection_pairs(model, reference, batch):
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=1e-4, atol=1e-3)


def test_inference_amp_runs_detection_in_bf16_and_returns_float32(make_cfg, batch):
    reference, model = twin_models(make_cfg, **{"TEST.AMP.ENABLED": True})
    fpn_dtypes, hook_autocast = [], []
    model.backbone.fpn_output2.register_forward_hook(lambda m, i, out: fpn_dtypes.append(out.dtype))
    model.add_post_hook(lambda inputs, results: hook_autocast.append(torch.is_autocast_enabled("cpu")) or results)
    model.eval()
    reference.eval()
    with torch.no_grad():
        ours, theirs = model(batch), reference(batch)
        raw = model.inference(batch, do_postprocess=False)
    assert fpn_dtypes and set(fpn_dtypes) == {torch.bfloat16}
    assert hook_autocast == [False]  # post-hooks (the cell classifier) run in float32
    for a, b, r in zip(ours, theirs, raw):
        a, b = a["instances"], b["instances"]
        assert len(a) > 0 and len(b) > 0
        for instances in (a, r):
            assert_float32_fields(instances)
        assert_twin_detections(a, b)
