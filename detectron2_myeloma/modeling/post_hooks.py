"""Post-hooks: steps that refine a detector's inference results after Detectron2's post-processing.

A post-hook is registered in :data:`POST_HOOK_REGISTRY` under its name and built from the config as
``hook_class(cfg)``; ``MODEL.POST_HOOKS`` lists the names to run, in order. A hook takes the model's
inputs and its results, one ``{"instances": Instances}`` dict per image in original image coordinates,
and returns new results.

A hook class says what it does through :class:`PostHookInfo`'s class methods, which the tools ask
before building it (building may load weights): the fields it adds, whether it can drop or change
detections, how to name it in a report, and whether it fits the class names of the outputs.
"""
from typing import Any, Callable, Dict, List, Tuple, Type

from detectron2.config import CfgNode
from detectron2.utils.registry import Registry

PostHook = Callable[[List[Dict[str, Any]], List[Dict[str, Any]]], List[Dict[str, Any]]]

POST_HOOK_REGISTRY = Registry("POST_HOOK")
POST_HOOK_REGISTRY.__doc__ = """
Registry for inference post-hooks: callables ``hook(cfg)`` returning a :data:`PostHook`.
"""


class PostHookInfo:
    """What a post-hook class tells the tools about itself; a hook registered without it is taken to
    add no named field and to change detections."""

    adds_fields: Tuple[str, ...] = ()  # Instances fields it adds

    @classmethod
    def changes_detections(cls, cfg: CfgNode) -> bool:
        """Whether, configured as ``cfg``, it may drop or change detections (not only add fields)."""
        return True

    @classmethod
    def describe(cls, cfg: CfgNode) -> str:
        """The hook in a report's words, e.g. with the weights it loads."""
        return cls.__name__

    @classmethod
    def check_classes(cls, cfg: CfgNode, cell_class: int) -> None:
        """ValueError where it would not fit outputs whose cells are class ``cell_class``."""


def post_hook_infos(cfg: CfgNode) -> List[Type[PostHookInfo]]:
    """What each hook ``MODEL.POST_HOOKS`` names says about itself, in order, without building it; a hook
    registered without :class:`PostHookInfo` gets its defaults, under the hook's own name."""
    infos = []
    for name in cfg.MODEL.POST_HOOKS:
        hook = POST_HOOK_REGISTRY.get(name)
        infos.append(hook if isinstance(hook, type) and issubclass(hook, PostHookInfo)
                     else type(name, (PostHookInfo,), {}))
    return infos


def describe_post_hooks(cfg: CfgNode) -> List[str]:
    return [info.describe(cfg) for info in post_hook_infos(cfg)]


def without_label_only_hooks(cfg: CfgNode) -> CfgNode:
    """``cfg`` less the hooks that only add fields (their labels unused where only detections count)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.POST_HOOKS = [name for name, info in zip(cfg.MODEL.POST_HOOKS, post_hook_infos(cfg))
                            if info.changes_detections(cfg)]
    cfg.freeze()
    return cfg


def build_post_hooks(cfg: CfgNode) -> List[PostHook]:
    """The hooks ``MODEL.POST_HOOKS`` names, built in order."""
    return [POST_HOOK_REGISTRY.get(name)(cfg) for name in cfg.MODEL.POST_HOOKS]
