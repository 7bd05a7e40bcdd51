"""A trained project detector as a plain function from an image to its boxes: what code that needs only
boxes takes (the cell classifier's detector negatives), so that it builds no Detectron2 model itself."""
from typing import Callable, Optional

import numpy as np

from ..config import load_config
from ..utils.device import available_device
from .predictor import OriginalImagePredictor


def box_predictor(config_file: str, weights: str, device: Optional[str] = None
                  ) -> Callable[[np.ndarray, Optional[float]], np.ndarray]:
    """``(image_bgr, its median cell diameter) -> (N, 4)`` XYXY boxes, best first, of the tools'
    predictor for the detector ``config_file`` with ``weights``, on ``device`` (default: the config's
    MODEL.DEVICE) where this machine has it. The diameter is needed by a model that resizes by cell
    size, as the records of the datasets give it. The image is HxWx3 uint8 BGR; the boxes, float32 in
    its pixels, come back as a CPU array."""
    cfg = load_config(config_file, ["MODEL.WEIGHTS", weights])
    cfg.MODEL.DEVICE = available_device(device if device is not None else cfg.MODEL.DEVICE)
    cfg.freeze()
    predictor = OriginalImagePredictor(cfg)  # resizes as the tools do (by cell size where configured)

    def predict(image_bgr: np.ndarray, cell_diameter: Optional[float] = None) -> np.ndarray:
        """HxWx3 uint8 BGR image -> (N, 4) float32 XYXY boxes in its pixels, best first (no post-hooks)."""
        outputs = predictor(image_bgr, cell_diameter, post_hooks=False)
        return outputs["instances"].pred_boxes.tensor.cpu().numpy()

    return predict
