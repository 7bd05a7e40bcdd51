"""The meta-architecture of every detector here, plain Mask R-CNN and R-Mask R-CNN alike:
GeneralizedRCNN plus inference post-hooks, channels-last memory and the inference precision policy."""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList, Instances

from .post_hooks import PostHook, build_post_hooks
from .postprocessing import postprocess
from .precision import autocast, float32_fields, inference_precision


@META_ARCH_REGISTRY.register()
class GeneralizedRCNNWithPostHooks(GeneralizedRCNN):
    """``GeneralizedRCNN`` whose inference results pass through a list of post-hooks, in order.

    Hooks let later stages (e.g. a per-cell classifier) refine detections without subclassing the
    model again. They run only in :meth:`inference` with ``do_postprocess=True``, after the detections
    are rescaled to the output size; training is untouched. Hooks are plain callables, not submodules:
    one that owns a network moves and checkpoints it itself. Without hooks this model is
    ``GeneralizedRCNN``.

    From a config, the hooks are ``MODEL.POST_HOOKS`` (names in :data:`.post_hooks.POST_HOOK_REGISTRY`).

    An input with ``"mask_crops": True`` gets its masks as ``pred_mask_crops``, each pasted into its own
    box only, instead of full-size ``pred_masks`` (:mod:`.postprocessing`): memory that follows the cells,
    not the image, for the tiles of a large image. Inputs with ``"post_hooks": False`` skip the hooks
    (the cell-scale search needs the detector alone).

    Two speed switches leave the computation as it is: ``channels_last`` keeps weights and input
    batches in channels-last memory format (oneDNN's native layout on the CPU, tensor cores' on CUDA),
    and ``inference_dtype`` runs detection (not the post-hooks) under autocast to that dtype, its outputs
    cast back to float32 (``TEST.AMP.ENABLED``, resolved by :mod:`.precision`).
    """

    @configurable
    def __init__(self, *, post_hooks: Sequence[PostHook] = (), channels_last: bool = False,
                 inference_dtype: Optional[torch.dtype] = None, **kwargs):
        super().__init__(**kwargs)
        self.post_hooks: List[PostHook] = list(post_hooks)
        self.channels_last = channels_last
        self.inference_dtype = inference_dtype
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        ret = super().from_config(cfg)
        ret["channels_last"] = cfg.MODEL.CHANNELS_LAST
        ret["inference_dtype"] = inference_precision(cfg).dtype
        ret["post_hooks"] = build_post_hooks(cfg)
        return ret

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]) -> ImageList:
        images = super().preprocess_image(batched_inputs)
        if self.channels_last:
            images.tensor = images.tensor.contiguous(memory_format=torch.channels_last)
        return images

    def add_post_hook(self, hook: PostHook) -> None:
        """Append ``hook``: it runs after the hooks added before it."""
        self.post_hooks.append(hook)

    def inference(
        self,
        batched_inputs: List[Dict[str, torch.Tensor]],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ) -> Union[List[Dict[str, Any]], List[Instances]]:
        with autocast(self.device.type, self.inference_dtype):
            results = super().inference(batched_inputs, detected_instances, do_postprocess=False)
        results = self._float32(results)
        return self.finish(results, batched_inputs) if do_postprocess else results

    def finish(self, results: List[Instances], batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Raw detections -> the outputs ``inference`` returns: each at its input's requested resolution
        (:func:`.postprocessing.postprocess`), then through the post-hooks."""
        outputs = [{"instances": postprocess(result, inputs)} for result, inputs in zip(results, batched_inputs)]
        if all(inputs.get("post_hooks", True) for inputs in batched_inputs):
            for hook in self.post_hooks:
                outputs = hook(batched_inputs, outputs)
        return outputs

    def detect(self, batched_inputs: List[Dict[str, Any]]
               ) -> Tuple[ImageList, Dict[str, torch.Tensor], List[Instances]]:
        """The steps of ``inference`` that test-time augmentation reuses per view: (input batch, feature
        maps, raw detections at the input's scale), under the inference precision."""
        with autocast(self.device.type, self.inference_dtype):
            images = self.preprocess_image(batched_inputs)
            features = self.backbone(images.tensor)
            proposals, _ = self.proposal_generator(images, features, None)
            results, _ = self.roi_heads(images, features, proposals, None)
        return images, features, self._float32(results)

    def masks_for_boxes(self, images: ImageList, features: Dict[str, torch.Tensor],
                        instances: List[Instances]) -> List[Instances]:
        """The masks of ``instances`` (boxes at the input's scale) from :meth:`detect`'s features."""
        with autocast(self.device.type, self.inference_dtype):
            results = self.roi_heads.masks_for_boxes(images, features, instances)
        return self._float32(results)

    def _float32(self, results: List[Instances]) -> List[Instances]:
        return [float32_fields(result) for result in results] if self.inference_dtype is not None else results
