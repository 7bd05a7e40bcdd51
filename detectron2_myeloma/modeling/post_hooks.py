"""Post-hooks: steps that refine a detector's inference results after Detectron2's post-processing.

A post-hook is registered in :data:`POST_HOOK_REGISTRY` under its name and built from the config as
``hook_class(cfg)``; ``MODEL.POST_HOOKS`` lists the names to run, in order. A hook takes the model's
inputs and its results, one ``{"instances": Instances}`` dict per image in original image coordinates,
and returns new results.
"""
from typing import Any, Callable, Dict, List

from detectron2.config import CfgNode
from detectron2.utils.registry import Registry

PostHook = Callable[[List[Dict[str, Any]], List[Dict[str, Any]]], List[Dict[str, Any]]]

POST_HOOK_REGISTRY = Registry("POST_HOOK")
POST_HOOK_REGISTRY.__doc__ = """
Registry for inference post-hooks: callables ``hook(cfg)`` returning a :data:`PostHook`.
"""


def build_post_hooks(cfg: CfgNode) -> List[PostHook]:
    """The hooks ``MODEL.POST_HOOKS`` names, built in order."""
    return [POST_HOOK_REGISTRY.get(name)(cfg) for name in cfg.MODEL.POST_HOOKS]
