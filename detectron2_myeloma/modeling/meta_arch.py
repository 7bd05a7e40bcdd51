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
        """Detectron2's normalised, padded batch, in channels-last memory format with ``channels_last``.

        Args:
            batched_inputs: per image, ``"image"``: (3, H, W) in ``INPUT.FORMAT`` channel order, 0..255 (uint8
                from the dataset mapper, float32 from the predictor).

        Returns:
            ``tensor``: (N, 3, Hp, Wp) float32, ``(image - PIXEL_MEAN) / PIXEL_STD`` zero-padded to multiples of
            the backbone's ``size_divisibility``; ``image_sizes``: each image's (H, W) before padding.
        """
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
        """``GeneralizedRCNN.inference`` under the inference precision, its results cast to float32, then
        :meth:`finish` unless ``do_postprocess`` is False. Given boxes go through :meth:`masks_for_boxes`,
        so the mask head gets the inputs a full pass gives it.

        Args:
            batched_inputs: per image, ``"image"`` as :meth:`preprocess_image` takes it; optional ``"height"``
                and ``"width"`` (the output size), ``"mask_crops"`` and ``"post_hooks"``.
            detected_instances: per image, known ``pred_boxes`` ((R_i, 4) XYXY in model-input pixels) and
                ``pred_classes`` ((R_i,) int64) whose masks alone are predicted.
            do_postprocess: False returns the raw detections.

        Returns:
            :meth:`finish`'s outputs; without ``do_postprocess``, per image the raw detections at the model
            input's size: ``pred_boxes`` (R_i, 4) float32 XYXY, ``scores`` (R_i,) float32, ``pred_classes``
            (R_i,) int64, ``pred_masks`` (R_i, 1, S, S) float32 probabilities (S the mask head's output side)
            and, with a nucleus, ``pred_nucleus_masks`` of the same shape.
        """
        if detected_instances is None:
            with autocast(self.device.type, self.inference_dtype):
                results = self._float32(super().inference(batched_inputs, do_postprocess=False))
        else:  # Detectron2's given-box path would skip the ROI heads' inputs (float32 maps, the pixels)
            with autocast(self.device.type, self.inference_dtype):
                images = self.preprocess_image(batched_inputs)
                features = self.backbone(images.tensor)
            results = self.masks_for_boxes(images, features, [x.to(self.device) for x in detected_instances])
        return self.finish(results, batched_inputs) if do_postprocess else results

    def finish(self, results: List[Instances], batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Raw detections -> the outputs ``inference`` returns: each at its input's requested resolution
        (:func:`.postprocessing.postprocess`), then through the post-hooks.

        Args:
            results: per image, the raw detections at the model input's size (``inference`` without
                ``do_postprocess``).
            batched_inputs: the model inputs; ``"height"``, ``"width"``, ``"mask_crops"`` and ``"post_hooks"``
                are read.

        Returns:
            Per image ``{"instances": Instances}`` at its output size H x W: ``pred_boxes`` (R_i, 4) float32
            XYXY in output pixels, ``scores`` (R_i,) float32, ``pred_classes`` (R_i,) int64 (detections whose
            box is empty there dropped), ``pred_masks`` (R_i, H, W) bool and ``pred_nucleus_masks`` alike, or
            with ``"mask_crops"`` ``pred_mask_crops`` and ``pred_nucleus_crops``; plus what the hooks change.
        """
        outputs = [{"instances": postprocess(result, inputs)} for result, inputs in zip(results, batched_inputs)]
        if all(inputs.get("post_hooks", True) for inputs in batched_inputs):
            for hook in self.post_hooks:
                outputs = hook(batched_inputs, outputs)
        return outputs

    def detect(self, batched_inputs: List[Dict[str, Any]]
               ) -> Tuple[ImageList, Dict[str, torch.Tensor], List[Instances]]:
        """The steps of ``inference`` that test-time augmentation reuses per view: (input batch, feature
        maps, raw detections at the input's scale), under the inference precision.

        Returns:
            The batch of :meth:`preprocess_image` ((N, 3, Hp, Wp) float32); the backbone's maps
            {name: (N, C, Hp / s, Wp / s)} of stride s, float32 or ``inference_dtype``; per image the raw
            detections as ``inference`` without ``do_postprocess`` returns them (float32).
        """
        with autocast(self.device.type, self.inference_dtype):
            images = self.preprocess_image(batched_inputs)
            features = self.backbone(images.tensor)
            proposals, _ = self.proposal_generator(images, features, None)
            results, _ = self.roi_heads(images, features, proposals, None)
        return images, features, self._float32(results)

    def masks_for_boxes(self, images: ImageList, features: Dict[str, torch.Tensor],
                        instances: List[Instances]) -> List[Instances]:
        """The masks of ``instances`` (boxes at the input's scale) from :meth:`detect`'s features.

        Args:
            images, features: as :meth:`detect` returns them.
            instances: per image of the batch, ``pred_boxes`` ((R_i, 4) XYXY in model-input pixels) and
                ``pred_classes`` ((R_i,) int64).

        Returns:
            Per image, the detections with ``pred_masks`` ((R_i, 1, S, S) float32 probabilities) and, with a
            nucleus, ``pred_nucleus_masks`` alike.
        """
        with autocast(self.device.type, self.inference_dtype):
            results = self.roi_heads.masks_for_boxes(images, features, instances)
        return self._float32(results)

    def _float32(self, results: List[Instances]) -> List[Instances]:
        return [float32_fields(result) for result in results] if self.inference_dtype is not None else results
