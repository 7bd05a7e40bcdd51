"""The detector run over image files: Detectron2's ``DefaultPredictor`` plus the full-resolution image
that the cell classifier post-hook crops from."""
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.engine import DefaultPredictor
from detectron2.structures import Instances

from ..data.images import Failure, iter_images


class OriginalImagePredictor(DefaultPredictor):
    """``DefaultPredictor`` whose model input also holds the full-resolution image, ``"original_image"``
    (3xHxW uint8 in ``INPUT.FORMAT``): the cell classifier post-hook cuts its crops from it, at the
    resolution its training crops were cut at, rather than from the resized ``"image"``.

    The entry is added by a forward pre-hook on the model, so the pre-processing stays
    ``DefaultPredictor``'s own.
    """

    def __init__(self, cfg: CfgNode):
        super().__init__(cfg)
        self._original: Optional[np.ndarray] = None
        self.model.register_forward_pre_hook(self._attach_original_image)

    def __call__(self, original_image: np.ndarray) -> Dict[str, Any]:
        """Predictions for one HxWx3 BGR image, as ``DefaultPredictor`` returns them."""
        self._original = original_image
        try:
            return super().__call__(original_image)
        finally:
            self._original = None

    def _attach_original_image(self, model: torch.nn.Module, args: Tuple[Any, ...]) -> None:
        if self._original is None:  # the model called directly, not through this predictor
            return
        image = self._original[:, :, ::-1] if self.input_format == "RGB" else self._original
        full = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        for inputs in args[0]:
            inputs["original_image"] = full


def build_predictor(cfg: CfgNode, cell_class: int) -> OriginalImagePredictor:
    """The predictor of the tools. Raises ValueError when a cell classifier would classify another
    class than the one the outputs count as cells (``cell_class``, from the class names)."""
    classifier = cfg.MODEL.CELL_CLASSIFIER
    if "CellClassifierHook" in cfg.MODEL.POST_HOOKS and classifier.CELL_CLASS != cell_class:
        raise ValueError(f"MODEL.CELL_CLASSIFIER.CELL_CLASS is {classifier.CELL_CLASS} but the cell class "
                         f"of the class names is {cell_class}")
    return OriginalImagePredictor(cfg)


def predict_images(predictor: DefaultPredictor, paths: Iterable[str], failures: List[Failure]
                   ) -> Iterator[Tuple[str, np.ndarray, Instances]]:
    """``(path, BGR image, Instances on CPU at the image's resolution)`` for every readable image;
    unreadable ones are appended to ``failures``."""
    for path, image in iter_images(list(paths), failures):
        yield path, image, predictor(image)["instances"].to("cpu")
