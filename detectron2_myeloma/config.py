"""Every config key this project adds to Detectron2's defaults, each with a one-line comment."""
from detectron2.config import CfgNode as CN


def add_myeloma_config(cfg: CN) -> None:
    """Add the project's keys to a Detectron2 config (call before merging a project YAML)."""
    _C = cfg
