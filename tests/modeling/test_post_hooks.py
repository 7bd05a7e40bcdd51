"""Post-hooks say what they do (modeling/post_hooks.py), and the tools ask instead of matching names: which
hooks a submission can skip, how a report names them, whether they fit the outputs' classes."""
import pytest
from detectron2.config import get_cfg

from detectron2_myeloma import add_myeloma_config
from detectron2_myeloma.modeling.post_hooks import (POST_HOOK_REGISTRY, describe_post_hooks, post_hook_infos,
                                                    without_label_only_hooks)


@POST_HOOK_REGISTRY.register()
def PlainTestHook(cfg):  # a builder that says nothing about itself: taken to change detections
    return lambda inputs, results: results


def hooks_cfg(keep_non_myeloma: bool):
    cfg = get_cfg()
    add_myeloma_config(cfg)
    cfg.MODEL.POST_HOOKS = ["CellClassifierHook", "PlainTestHook"]
    cfg.MODEL.CELL_CLASSIFIER.WEIGHTS = "classifier.pth"
    cfg.MODEL.CELL_CLASSIFIER.KEEP_NON_MYELOMA = keep_non_myeloma
    return cfg


def test_hooks_that_only_label_are_left_out_where_only_detections_count():
    assert list(without_label_only_hooks(hooks_cfg(True)).MODEL.POST_HOOKS) == ["PlainTestHook"]
    assert list(without_label_only_hooks(hooks_cfg(False)).MODEL.POST_HOOKS) == ["CellClassifierHook",
                                                                                 "PlainTestHook"]


def test_hooks_name_themselves_and_check_the_cell_class():
    cfg = hooks_cfg(True)
    assert describe_post_hooks(cfg) == ["cell classifier classifier.pth", "PlainTestHook"]
    classifier, _ = post_hook_infos(cfg)
    assert classifier.adds_fields == ("pred_cell_probs", "pred_cell_labels")
    classifier.check_classes(cfg, cfg.MODEL.CELL_CLASSIFIER.CELL_CLASS)
    with pytest.raises(ValueError, match="CELL_CLASS is 0 but the cell class of the class names is 1"):
        classifier.check_classes(cfg, 1)
