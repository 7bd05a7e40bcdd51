"""Checkpoints for shipping: a training checkpoint reduced to its model weights, optionally in half
precision. Detectron2's ``DetectionCheckpointer`` loads the result like any checkpoint (a float16
tensor is copied into the float32 parameter), so a reduced file works wherever ``model_final.pth``
does."""
import io
import pickle
from typing import Dict

import torch

from .utils.atomic import write_atomic
from .utils.errors import InputError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def model_weights(path: str, dtype: str = "float32") -> Dict[str, torch.Tensor]:
    """The ``"model"`` state dict of a Detectron2 checkpoint, floating tensors cast to ``dtype``."""
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype}: not one of {', '.join(DTYPES)}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__})") from None
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise InputError(f"{path}: no \"model\" state dict in it (a Detectron2 checkpoint has one)")
    return {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in state.items()}


def save_weights(weights: Dict[str, torch.Tensor], path: str) -> int:
    """Write ``{"model": weights}`` atomically; its size in bytes."""
    buffer = io.BytesIO()
    torch.save({"model": weights}, buffer)
    write_atomic(path, buffer.getvalue())
    return buffer.tell()
