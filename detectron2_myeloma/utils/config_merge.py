"""Merging a YAML file and command-line overrides into a yacs config, with the tools' one-line errors:
shared by the detector's config and the cell classifier's."""
import os
from typing import Any, List, Sequence

import yaml
from fvcore.common.config import CfgNode as CN

from .errors import InputError, one_line


def merge_config(cfg: CN, config_file: str, opts: Sequence[Any] = ()) -> CN:
    """``cfg`` with ``config_file`` and then ``opts`` merged in. A missing or malformed file, an unknown
    key or a value of the wrong type is an InputError naming the file or the override (yacs raises bare
    assertions); an integer given for a float key (``INPUT.CELL_DIAMETER.TEST 80``) is taken as that
    float, as a user means it."""
    if not os.path.isfile(config_file):
        raise InputError(f"{config_file}: no such config file")
    try:
        cfg.merge_from_file(config_file)
    except (AssertionError, KeyError, ValueError, TypeError, yaml.YAMLError) as err:
        raise InputError(f"{config_file}: {one_line(err, limit=None)}") from None
    try:
        cfg.merge_from_list(_ints_for_floats(cfg, list(opts)))
    except (AssertionError, KeyError, ValueError, TypeError) as err:
        raise InputError(f"config override: {one_line(err, limit=None)}") from None
    return cfg


def _ints_for_floats(cfg: CN, opts: List[Any]) -> List[Any]:
    """``opts`` with integer values of float keys written as floats."""
    opts = list(opts)
    for i in range(0, len(opts) - 1, 2):
        node, *path = cfg, *str(opts[i]).split(".")
        for part in path:
            node = node.get(part) if isinstance(node, CN) else None
        value = CN._decode_cfg_value(opts[i + 1]) if isinstance(opts[i + 1], str) else opts[i + 1]
        if isinstance(node, float) and isinstance(value, int) and not isinstance(value, bool):
            opts[i + 1] = float(value)
    return opts
