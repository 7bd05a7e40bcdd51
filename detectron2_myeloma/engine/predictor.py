"""The detector on one image: Detectron2's ``DefaultPredictor`` at the image's cell scale,
plus the full-resolution image that the cell classifier post-hook crops from."""
from typing import Any, Dict, List, Optional, Sequence, Union

import cv2
import detectron2.data.transforms as T
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model

from ..checkpoint import MyelomaCheckpointer
from ..data.transforms import CellAugInput, ResizeToCellDiameter
from ..modeling.post_hooks import post_hook_infos
from ..structures import CellDetections
from .cell_scale import CellScaleFinder
from .tta import CellTTA


class OriginalImagePredictor(DefaultPredictor):
    """``DefaultPredictor`` for images whose cell scale is decided by the caller, once per image
    (:mod:`.cell_scale`), and whose model input also holds the full-resolution image.

    With ``INPUT.CELL_DIAMETER.TEST`` set, an image is resized so that its cells, ``cell_diameter``
    pixels across, span that many pixels (through :class:`CellAugInput`, as the training mapper hands
    each record's diameter); otherwise by ``INPUT.MIN_SIZE_TEST`` as Detectron2 does. The model input
    also holds ``"original_image"`` (3xHxW uint8 in ``INPUT.FORMAT``: the cell classifier post-hook cuts
    its crops from it, at the resolution its training crops were cut at), ``"cell_diameter"`` (for a
    classifier of physical-scale crops), ``"mask_crops"`` and ``"post_hooks"`` (see
    :class:`~detectron2_myeloma.modeling.meta_arch.GeneralizedRCNNWithPostHooks`). With
    ``TEST.AUG.ENABLED`` the model predicts from several views (:class:`~.tta.CellTTA`).
    """

    def __init__(self, cfg: CfgNode, model: Optional[torch.nn.Module] = None):
        # DefaultPredictor.__init__, loading MODEL.WEIGHTS with the project's checkpointer (a damaged
        # file is an InputError naming it) and resizing by cell size where configured; ``model``: one
        # already built and loaded (evaluation during training), used as it is
        self.cfg = cfg.clone()
        if model is None:
            model = build_model(self.cfg)
            model.eval()
            MyelomaCheckpointer(model).load(cfg.MODEL.WEIGHTS)
        self.model = model
        if len(cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        self.detector = self.model  # one view, for the cell-scale search
        if cfg.TEST.AUG.ENABLED:
            self.model = CellTTA(self.model, cfg)
        target = cfg.INPUT.CELL_DIAMETER.TEST
        self.resizes_by_cell = target > 0
        self.aug = (ResizeToCellDiameter((target,)) if self.resizes_by_cell else
                    T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST))
        self.input_format = cfg.INPUT.FORMAT

    def __call__(self, original_image: np.ndarray, cell_diameter: Optional[float] = None,
                 mask_crops: bool = False, post_hooks: bool = True, augment: bool = True) -> Dict[str, Any]:
        """Predictions for one HxWx3 uint8 BGR image whose median cell spans ``cell_diameter`` pixels, as
        ``DefaultPredictor`` returns them; with ``mask_crops``, the masks as ``pred_mask_crops``; with
        ``post_hooks`` False, without the post-hooks (the cell classifier); with ``augment`` False, from
        one view even where TEST.AUG is on."""
        return self.predict_batch([original_image], [cell_diameter], mask_crops, post_hooks, augment)[0]

    def predict_batch(self, original_images: Sequence[np.ndarray], cell_diameters: Sequence[Optional[float]],
                      mask_crops: bool = False, post_hooks: bool = True, augment: bool = True
                      ) -> List[Dict[str, Any]]:
        """:meth:`__call__` for several images in one forward (on a GPU, a fuller batch). Images whose
        model inputs differ in size are padded to the largest, which changes their detections a little:
        batch images of one size.

        Args:
            original_images: HxWx3 uint8 BGR arrays (uint8: the cell classifier post-hook crops from
                them).
            cell_diameters: each image's median cell diameter in its pixels (may be None where the model
                resizes by its short edge).

        Returns:
            One ``{"instances": Instances}`` per image, in that image's H x W pixels: ``pred_boxes`` ((N, 4)
            float32 XYXY), ``scores`` ((N,) float32), ``pred_classes`` ((N,) int64) and the masks,
            ``pred_masks`` ((N, H, W) bool) or, with ``mask_crops``, ``pred_mask_crops``
            (:class:`~detectron2_myeloma.structures.MaskCrops`), nuclei likewise where the model predicts
            them; plus the post-hooks' fields (e.g. the cell classifier's).
        """
        inputs = [self._model_input(image, diameter, mask_crops, post_hooks)
                  for image, diameter in zip(original_images, cell_diameters)]
        with torch.no_grad():
            return (self.model if augment else self.detector)(inputs)

    def _model_input(self, original_image: np.ndarray, cell_diameter: Optional[float], mask_crops: bool,
                     post_hooks: bool) -> Dict[str, Any]:
        if self.resizes_by_cell and not cell_diameter:
            raise ValueError("this model resizes by cell size (INPUT.CELL_DIAMETER.TEST): give the image's "
                             "cell_diameter (engine.cell_scale decides it)")
        # one contiguous HxWx3 copy in the model's channel order (cv2: a numpy [..., ::-1] copy is 10x
        # slower); "original_image" is a 3xHxW view of it, which the classifier reads back without a copy
        image = (cv2.cvtColor(original_image, cv2.COLOR_BGR2RGB) if self.input_format == "RGB"
                 else np.ascontiguousarray(original_image))
        aug_input = CellAugInput(image, cell_diameter=cell_diameter)
        self.aug(aug_input)
        inputs = {"image": torch.as_tensor(aug_input.image.astype("float32").transpose(2, 0, 1)),
                  "height": image.shape[0], "width": image.shape[1],
                  "original_image": torch.from_numpy(image).permute(2, 0, 1),
                  "mask_crops": mask_crops, "post_hooks": post_hooks}
        if cell_diameter:
            inputs["cell_diameter"] = float(cell_diameter)
        return inputs


def build_predictor(cfg: CfgNode, cell_class: int) -> OriginalImagePredictor:
    """The predictor of the tools. Raises ValueError when a post-hook does not fit outputs whose cells are
    ``cell_class`` (from the class names), e.g. a cell classifier of another class."""
    for info in post_hook_infos(cfg):
        info.check_classes(cfg, cell_class)
    return OriginalImagePredictor(cfg)


def build_scale_finder(predictor: OriginalImagePredictor, cfg: CfgNode, cell_class: int,
                       cell_diameter: Union[float, str, None] = None) -> CellScaleFinder:
    """The cell scale of each image for ``predictor`` (``cell_diameter``: --cell-diameter), searched
    with the bare detector, one view (:class:`~.cell_scale.CellScaleFinder`): every tool and option
    decides an image's scale alike."""
    def detect(image: np.ndarray, diameter: float) -> CellDetections:
        """HxWx3 uint8 BGR image whose cells are ``diameter`` px -> its detections, on the CPU."""
        outputs = predictor(image, diameter, mask_crops=True, post_hooks=False, augment=False)
        return CellDetections.from_instances(outputs["instances"].to("cpu"))

    return CellScaleFinder(detect, cfg.INPUT.CELL_DIAMETER.TEST, cfg.TEST.TILES.SIZE, cell_class, cell_diameter)
