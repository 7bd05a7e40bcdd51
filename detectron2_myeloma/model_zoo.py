"""The trained models shipped in the repository's ``models/`` folder, by short name, as
``detectron2.model_zoo`` names its COCO models.

A short name works wherever a checkpoint path does in a config (``MODEL.WEIGHTS segpc-rmask-lite2``,
``MODEL.CELL_CLASSIFIER.WEIGHTS segpc-cell-classifier``): :func:`~detectron2_myeloma.config.load_config`
replaces it by the file. ``$DETECTRON2_MYELOMA_MODELS`` points elsewhere than ``<repo>/models`` (in an
installed package: the copy that ``setup.py`` packs with it).
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .utils.errors import InputError

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_PACKAGE)
_PACKED = os.path.join(_PACKAGE, "_packaged")  # configs/ and models/ inside a built wheel (setup.py)


def resource_root() -> str:
    """The folder holding ``configs/`` and ``models/``: the repository of a checkout (or an editable
    install), else their copy inside an installed package."""
    in_repo = all(os.path.isdir(os.path.join(_REPO, name)) for name in ("configs", "models"))
    return _REPO if in_repo else _PACKED


@dataclass(frozen=True)
class ShippedModel:
    weights: str  # file under the models folder
    config_file: str = ""  # detector config, relative to resource_root() (the classifier's is in its checkpoint)


SHIPPED_MODELS: Dict[str, ShippedModel] = {
    "segpc-rmask-lite2": ShippedModel("segpc-rmask-lite2/model_fp16.pth",
                                      "configs/SegPC/rmask_rcnn_lite2_fpn_d80.yaml"),
    # segpc-rmask-lite2 with a mask head that also outlines each cell's nucleus, refined at points: the
    # file holds the head only and names segpc-rmask-lite2 as its base (checkpoint.MyelomaCheckpointer)
    "segpc-rmask-lite2-nucleus": ShippedModel("segpc-rmask-lite2-nucleus/mask_head_fp16.pth",
                                              "configs/SegPC/rmask_rcnn_lite2_fpn_d80_point_nucleus.yaml"),
    "segpc-cell-classifier": ShippedModel("segpc-cell-classifier/model.pth"),
}
DEFAULT_DETECTOR = "segpc-rmask-lite2-nucleus"  # what the inference tools use without --config-file
DEFAULT_CLASSIFIER = "segpc-cell-classifier"  # and the cell classifier they run on its cells


def models_dir() -> str:
    return os.path.expanduser(os.getenv("DETECTRON2_MYELOMA_MODELS", os.path.join(resource_root(), "models")))


def get(name: str) -> ShippedModel:
    if name not in SHIPPED_MODELS:
        raise InputError(f"{name!r} is not a shipped model (known: {', '.join(sorted(SHIPPED_MODELS))})")
    return SHIPPED_MODELS[name]


def get_weights(name: str) -> str:
    """The checkpoint file of a shipped model; a missing file is named."""
    path = os.path.join(models_dir(), get(name).weights)
    if not os.path.isfile(path):
        raise InputError(f"{path}: weights of the shipped model {name!r} not found (is {models_dir()} "
                         "complete? DETECTRON2_MYELOMA_MODELS may point elsewhere)")
    return path


def get_config_file(name: str) -> str:
    """The config a shipped detector was trained with."""
    return os.path.join(resource_root(), get(name).config_file)


def shipped_name(weights: str) -> Optional[str]:
    """The short name of the shipped detector whose file ``weights`` is (a name or a path), else None."""
    for name, model in SHIPPED_MODELS.items():
        if model.config_file and (weights == name or os.path.realpath(weights) == os.path.realpath(
                os.path.join(models_dir(), model.weights))):
            return name
    return None


def resolve_weights(value: str) -> str:
    """The checkpoint file of ``value`` if it is a shipped model's short name, else ``value`` (a path)."""
    return get_weights(value) if value in SHIPPED_MODELS else value


def default_inference() -> Tuple[str, List[str]]:
    """The config file and overrides of the shipped detector, with the shipped classifier as post-hook."""
    opts = ["MODEL.WEIGHTS", DEFAULT_DETECTOR, "MODEL.POST_HOOKS", ["CellClassifierHook"],
            "MODEL.CELL_CLASSIFIER.WEIGHTS", DEFAULT_CLASSIFIER]
    return get_config_file(DEFAULT_DETECTOR), opts
