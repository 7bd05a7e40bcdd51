"""Checkpoint files: every ``.pth`` the project reads goes through :func:`load_checkpoint` (Detectron2's
through :class:`MyelomaCheckpointer`), so that a damaged file is one line naming it; and checkpoints for
shipping: a training checkpoint reduced to its model weights, optionally in half precision.
Detectron2's checkpointer loads the result like any checkpoint (a float16 tensor is copied into the
float32 parameter), so a reduced file works wherever ``model_final.pth`` does."""
import io
import os
import pickle
import re
import struct
from typing import Any, Dict, Optional, Sequence

import torch
from detectron2.checkpoint import DetectionCheckpointer

from .utils.atomic import write_atomic
from .utils.errors import InputError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# What torch.load raises for a damaged or foreign file (measured on truncated and bit-flipped ones):
# it reads the file only, so none of these is a bug of the caller.
_UNREADABLE = (OSError, RuntimeError, EOFError, LookupError, ValueError, AssertionError, struct.error,
               pickle.UnpicklingError)


def load_checkpoint(path: str) -> Dict[str, Any]:
    """The dict a PyTorch checkpoint file holds, on the CPU. Read with ``weights_only=True``: tensors and
    plain containers only, as unpickling other objects could run code from the file. InputError naming
    the file when it is damaged, not a PyTorch file, holds other Python objects, or holds no dict."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as err:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if unsafe:
            raise InputError(f"{path}: holds Python objects ({unsafe.group(1)}) besides tensors, which are "
                             "not loaded: unpickling them could run code from the file") from None
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__})") from None
    if not isinstance(checkpoint, dict):
        raise InputError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint (a dict)")
    return checkpoint


class MyelomaCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer, reading ``.pth`` files with :func:`load_checkpoint`: a damaged
    MODEL.WEIGHTS is an InputError naming the file, where Detectron2 raises PyTorch's unpickling error
    (whose advice, ``weights_only=False``, would run code from an untrusted file).

    A weights file with a ``"base"`` (a shipped model's short name or a path: :func:`save_weights`) holds
    only the parameters that differ from that model, e.g. a mask head trained on a frozen shipped
    detector; it is loaded as the base's weights with its own on top."""

    def _torch_load(self, f: str) -> Dict[str, Any]:
        checkpoint = load_checkpoint(f)
        base = checkpoint.get("base")
        if base is None:
            return checkpoint
        from .model_zoo import resolve_weights  # the model zoo names files; checkpoints are read here

        path = resolve_weights(str(base))
        if os.path.abspath(path) == os.path.abspath(f):
            raise InputError(f"{f}: names itself as its base")
        self.logger.info("%s holds %d weights on top of its base %s (%s)", f, len(checkpoint.get("model", {})),
                         base, path)
        weights = self._torch_load(path).get("model", {})
        return {**checkpoint, "model": {**weights, **checkpoint.get("model", {})}}


def model_weights(path: str, dtype: str = "float32", prefixes: Sequence[str] = ()) -> Dict[str, torch.Tensor]:
    """The ``"model"`` state dict of a Detectron2 checkpoint, floating tensors cast to ``dtype``; with
    ``prefixes``, only the entries whose names start with one of them (each must match one). Returns
    {name: CPU tensor of the parameter's or buffer's own shape}: floating ones in ``dtype`` (float32,
    float16 or bfloat16), the others (integer buffers) as stored."""
    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype}: not one of {', '.join(DTYPES)}")
    state = load_checkpoint(path).get("model")
    if not isinstance(state, dict) or not state:
        raise InputError(f"{path}: no \"model\" state dict in it (a Detectron2 checkpoint has one)")
    if prefixes:
        unmatched = [p for p in prefixes if not any(k.startswith(p) for k in state)]
        if unmatched:
            raise InputError(f"{path}: no weight name starts with {', '.join(unmatched)}")
        state = {k: v for k, v in state.items() if k.startswith(tuple(prefixes))}
    return {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in state.items()}


def save_weights(weights: Dict[str, torch.Tensor], path: str, base: Optional[str] = None) -> int:
    """Write ``{"model": weights}`` atomically, with ``"base"`` (the model the weights complete, see
    :class:`MyelomaCheckpointer`) when given; its size in bytes. ``weights``: {name: tensor}, as
    :func:`model_weights` gives them, saved with their shapes, dtypes and devices unchanged."""
    buffer = io.BytesIO()
    torch.save({"model": weights, **({"base": base} if base else {})}, buffer)
    write_atomic(path, buffer.getvalue())
    return buffer.tell()
