"""Detectron2 project for multiple-myeloma plasma cells.

Importing the package registers the builtin datasets (lazily: nothing is read until a dataset is used)
and the project's models and post-hooks in Detectron2's registries.
"""
from .config import add_myeloma_config, load_config
from . import modeling  # noqa: F401  registers backbones, heads and the meta-architecture
from .classifier import hook as _classifier_hook  # noqa: F401  registers CellClassifierHook
from .data.datasets import builtin as _builtin  # noqa: F401  registers datasets

__all__ = ["add_myeloma_config", "load_config"]
