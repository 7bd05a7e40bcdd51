"""The detector run over image files: Detectron2's ``DefaultPredictor`` plus the full-resolution image
that the cell classifier post-hook crops from."""
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.engine import DefaultPredictor
from detectron2.structures import Instances

from ..data.builtin import FRAME_CELL_DIAMETERS
from ..data.images import Failure, iter_images
from ..data.transforms import ResizeToCellDiameter
from ..utils.errors import InputError


class OriginalImagePredictor(DefaultPredictor):
    """``DefaultPredictor`` whose model input also holds the full-resolution image, ``"original_image"``
    (3xHxW uint8 in ``INPUT.FORMAT``): the cell classifier post-hook cuts its crops from it, at the
    resolution its training crops were cut at, rather than from the resized ``"image"``.

    The entry is added by a forward pre-hook on the model, so the pre-processing stays
    ``DefaultPredictor``'s own. With ``INPUT.CELL_DIAMETER.TEST`` set, images are resized so that their
    cells span that many pixels: cells of ``cell_diameter`` pixels, or, without it, of the diameter known
    for the image's frame size (``FRAME_CELL_DIAMETERS``: SegPC's two microscopes and its reduced frames).
    """

    def __init__(self, cfg: CfgNode, cell_diameter: Optional[float] = None):
        super().__init__(cfg)
        target = cfg.INPUT.CELL_DIAMETER.TEST
        if target > 0:
            self.aug = ResizeToCellDiameter((target,), cell_diameter or frame_cell_diameter)
        self.cell_diameter = cell_diameter
        self._original: Optional[np.ndarray] = None
        self._mask_crops = False
        self.model.register_forward_pre_hook(self._attach_original_image)

    def __call__(self, original_image: np.ndarray, mask_crops: bool = False) -> Dict[str, Any]:
        """Predictions for one HxWx3 BGR image, as ``DefaultPredictor`` returns them; with
        ``mask_crops``, the masks as ``pred_mask_crops`` (see
        :class:`~detectron2_myeloma.modeling.meta_arch.GeneralizedRCNNWithPostHooks`)."""
        self._original, self._mask_crops = original_image, mask_crops
        try:
            return super().__call__(original_image)
        finally:
            self._original, self._mask_crops = None, False

    def _attach_original_image(self, model: torch.nn.Module, args: Tuple[Any, ...]) -> None:
        """Adds ``"original_image"``, ``"mask_crops"`` and, where known, the image's ``"cell_diameter"``
        (for a classifier of physical-scale crops) to the model inputs."""
        if self._original is None:  # the model called directly, not through this predictor
            return
        image = self._original[:, :, ::-1] if self.input_format == "RGB" else self._original
        full = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        diameter = known_cell_diameter(self._original.shape[:2], self.cell_diameter)
        for inputs in args[0]:
            inputs["original_image"] = full
            inputs["mask_crops"] = self._mask_crops
            if diameter:
                inputs["cell_diameter"] = diameter


def known_cell_diameter(image_hw: Tuple[int, int], given: Optional[float]) -> Optional[float]:
    """An image's median cell diameter in pixels: ``given`` (--cell-diameter), else its frame size's,
    if known (``FRAME_CELL_DIAMETERS``)."""
    return given or FRAME_CELL_DIAMETERS.get(tuple(image_hw))


def frame_cell_diameter(image_hw: Tuple[int, int]) -> float:
    """The median cell diameter (pixels) of frames of this size; InputError for an unknown size."""
    if tuple(image_hw) not in FRAME_CELL_DIAMETERS:
        known = ", ".join(f"{w}x{h}" for h, w in FRAME_CELL_DIAMETERS)
        raise InputError(f"the cell size of {image_hw[1]}x{image_hw[0]} frames is not known (known: {known}): "
                         "give it with --cell-diameter PX (median cell diameter in pixels)")
    return FRAME_CELL_DIAMETERS[tuple(image_hw)]


def build_predictor(cfg: CfgNode, cell_class: int, cell_diameter: Optional[float] = None
                    ) -> OriginalImagePredictor:
    """The predictor of the tools (``cell_diameter``: see :class:`OriginalImagePredictor`). Raises
    ValueError when a cell classifier would classify another class than the one the outputs count as
    cells (``cell_class``, from the class names)."""
    classifier = cfg.MODEL.CELL_CLASSIFIER
    if "CellClassifierHook" in cfg.MODEL.POST_HOOKS and classifier.CELL_CLASS != cell_class:
        raise ValueError(f"MODEL.CELL_CLASSIFIER.CELL_CLASS is {classifier.CELL_CLASS} but the cell class "
                         f"of the class names is {cell_class}")
    return OriginalImagePredictor(cfg, cell_diameter)


def predict_images(predictor: DefaultPredictor, paths: Iterable[str], failures: List[Failure]
                   ) -> Iterator[Tuple[str, np.ndarray, Instances]]:
    """``(path, BGR image, Instances on CPU at the image's resolution)`` for every readable image;
    unreadable ones, and those the model cannot take (a frame of unknown cell size), are appended to
    ``failures``."""
    for path, image in iter_images(list(paths), failures):
        try:
            outputs = predictor(image)
        except InputError as err:
            failures.append((path, str(err)))
            continue
        yield path, image, outputs["instances"].to("cpu")
