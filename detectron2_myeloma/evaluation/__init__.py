"""COCO and SegPC-2021 evaluation of the project's models."""
from .segpc_score import SegPCEvaluator, score_segpc

__all__ = ["SegPCEvaluator", "score_segpc"]
