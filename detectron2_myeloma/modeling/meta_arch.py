"""R-Mask R-CNN meta-architecture: GeneralizedRCNN plus explicit inference post-hooks."""
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Instances

from .cell_classifier_hook import CellClassifierHook

# (batched_inputs, results) -> results, where results are GeneralizedRCNN's post-processed outputs:
# one {"instances": Instances} dict per input image, in original image coordinates.
PostHook = Callable[[List[Dict[str, Any]], List[Dict[str, Any]]], List[Dict[str, Any]]]


@META_ARCH_REGISTRY.register()
class RMaskRCNN(GeneralizedRCNN):
    """``GeneralizedRCNN`` whose inference results pass through a list of post-hooks, in order.

    Hooks let later stages (e.g. a per-cell classifier) refine detections without subclassing the
    model again. They run only in :meth:`inference` with ``do_postprocess=True``, after
    ``_postprocess``; training is untouched. Hooks are plain callables, not submodules: one that owns
    a network moves and checkpoints it itself. Without hooks this model is ``GeneralizedRCNN``.

    From a config, ``MODEL.CELL_CLASSIFIER.ENABLED`` adds a :class:`CellClassifierHook`.
    """

    @configurable
    def __init__(self, *, post_hooks: Sequence[PostHook] = (), **kwargs):
        super().__init__(**kwargs)
        self.post_hooks: List[PostHook] = list(post_hooks)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        ret = super().from_config(cfg)
        if cfg.MODEL.CELL_CLASSIFIER.ENABLED:
            ret["post_hooks"] = [CellClassifierHook(cfg)]
        return ret

    def add_post_hook(self, hook: PostHook) -> None:
        """Append ``hook``: it runs after the hooks added before it."""
        self.post_hooks.append(hook)

    def inference(
        self,
        batched_inputs: List[Dict[str, torch.Tensor]],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ) -> Union[List[Dict[str, Any]], List[Instances]]:
        results = super().inference(batched_inputs, detected_instances, do_postprocess)
        if do_postprocess:
            for hook in self.post_hooks:
                results = hook(batched_inputs, results)
        return results
