"""COCO and SegPC-2021 evaluation of the project's models."""
from .segpc_evaluator import SegPCEvaluator
from .segpc_metrics import score_segpc

__all__ = ["SegPCEvaluator", "score_segpc"]
