"""The classifier model: offline ImageNet weights really loaded, frozen stages, classify(), checkpoints
and the shipped configs."""
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from classifier_testutils import small_cfg

from detectron2_myeloma.classifier.config import get_classifier_cfg
from detectron2_myeloma.classifier.model import (CellClassifier, build_classifier, classifier_checkpoint,
                                                 load_classifier)
from detectron2_myeloma.modeling.pretrained import packaged_weights_path

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "Classifier"


@pytest.fixture(scope="module")
def lite0() -> CellClassifier:
    torch.manual_seed(0)
    return build_classifier(small_cfg())


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite2"])
def test_packaged_weights_are_loaded(name, lite0):
    model = lite0 if name == "tf_efficientnet_lite0" else build_classifier(small_cfg(name))
    state = torch.load(packaged_weights_path(name), map_location="cpu", weights_only=True)
    net = model.net
    torch.testing.assert_close(net.conv_stem.weight, state["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(net.bn1.running_var, state["_bn0.running_var"], rtol=0, atol=0)
    torch.testing.assert_close(net.blocks[3][0].conv_pw.weight, state["_blocks.%d._expand_conv.weight" % (
        sum(len(s) for s in net.blocks[:3]))], rtol=0, atol=0)
    torch.testing.assert_close(net.conv_head.weight, state["_conv_head.weight"], rtol=0, atol=0)
    assert net.get_classifier().out_features == 2  # the ImageNet head is replaced


def test_user_weights_file_by_name(tmp_path):
    source = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    torch.nn.init.normal_(source.conv_stem.weight)
    path = tmp_path / "lite0.pth"
    torch.save(source.state_dict(), path)
    model = build_classifier(small_cfg(**{"MODEL.WEIGHTS": str(path)}))
    torch.testing.assert_close(model.net.conv_stem.weight, source.conv_stem.weight, rtol=0, atol=0)


def test_model_without_weights_warns_loudly():
    with pytest.warns(UserWarning, match="RANDOM initialisation"):
        build_classifier(small_cfg("test_efficientnet"))


def test_frozen_stages_stay_frozen():
    model = build_classifier(small_cfg(**{"MODEL.FREEZE_AT": 3}))
    net = model.net
    assert not any(p.requires_grad for m in (net.conv_stem, net.bn1, *net.blocks[:3]) for p in m.parameters())
    assert all(p.requires_grad for p in net.blocks[3].parameters())
    frozen_stats = net.blocks[2][0].bn1.running_mean.clone()
    model.train()
    assert not net.bn1.training and not net.blocks[2][0].bn1.training and net.blocks[3][0].bn1.training
    model(torch.rand(4, 3, 64, 64) * 255)
    torch.testing.assert_close(net.blocks[2][0].bn1.running_mean, frozen_stats, rtol=0, atol=0)


def test_classify_gives_myeloma_probabilities(lite0):
    crops = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    probs = lite0.classify(crops, batch_size=2)
    assert probs.shape == (5,) and ((probs >= 0) & (probs <= 1)).all()
    torch.testing.assert_close(lite0.classify(torch.from_numpy(crops).permute(0, 3, 1, 2).float()), probs)
    assert lite0.training  # classify restores the mode it found (module fixture built in train mode)
    with pytest.raises(ValueError, match="64, 64"):
        lite0.classify(torch.zeros(2, 3, 32, 32))


def test_fixed_batches_give_the_same_probabilities_in_one_shape(lite0):
    """As on CUDA: every forward pass takes the full batch (the last padded), and each crop keeps its
    probability; the warm-up runs that one shape."""
    crops = np.random.default_rng(1).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    shapes = []
    handle = lite0.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    try:
        free = lite0.classify(crops, batch_size=4)
        fixed = lite0.classify(crops, batch_size=4, fixed_batch=True)
        lite0.warm_up(4)
    finally:
        handle.remove()
    assert shapes == [(4, 3, 64, 64), (1, 3, 64, 64)] + [(4, 3, 64, 64)] * 3
    torch.testing.assert_close(fixed, free)


def test_checkpoint_round_trip(lite0, tmp_path):
    cfg = small_cfg(**{"INPUT.CROP_MARGIN": 0.2, "TEST.THRESHOLD": 0.3})
    path = tmp_path / "model.pth"
    torch.save(classifier_checkpoint(lite0, cfg, epoch=3), path)
    loaded = load_classifier(str(path))
    assert loaded.input_size == 64 and loaded.crop_margin == 0.2 and not loaded.training
    assert loaded.threshold == 0.3
    crops = torch.rand(3, 3, 64, 64) * 255
    torch.testing.assert_close(loaded.classify(crops), lite0.classify(crops))


def test_shipped_configs():
    cfgs = {}
    for name in ("Base-Classifier", "lite2", "efficientnet_b3"):
        cfg = get_classifier_cfg()
        cfg.merge_from_file(str(CONFIGS / f"{name}.yaml"))
        cfgs[name] = cfg
    assert cfgs["lite2"].MODEL.NAME == "tf_efficientnet_lite2" and cfgs["lite2"].INPUT.SIZE == 128
    assert cfgs["efficientnet_b3"].INPUT.SIZE == 300 and cfgs["efficientnet_b3"].MODEL.DROPOUT == 0.3
    for cfg in cfgs.values():  # the paper's solver, inherited from the base
        assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.BATCH_SIZE, cfg.SOLVER.EPOCHS) == (2e-4, 32, 30)
