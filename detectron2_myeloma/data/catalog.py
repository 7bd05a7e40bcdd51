"""Looking datasets up by name with a one-line error for a name that is not registered.

Detectron2's ``DatasetCatalog.get`` answers an unknown name with a KeyError listing every registered
dataset (about 60 here); a user needs the name they mistyped and the nearest real ones.
"""
import difflib
from typing import List, Sequence

from detectron2.data import DatasetCatalog

from ..utils.errors import InputError


def check_dataset_names(names: Sequence[str], where: str) -> None:
    """InputError for the first of ``names`` that is not registered; ``where`` says where it was
    given (``DATASETS.TRAIN``, ``--dataset``)."""
    registered = DatasetCatalog.list()
    for name in names:
        if name not in registered:
            close = difflib.get_close_matches(name, registered, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else \
                f"{len(registered)} are registered, e.g. {', '.join(sorted(registered)[:3])}."
            raise InputError(f"{where}: no dataset named {name!r} ({hint} The names are in "
                             "detectron2_myeloma/data/datasets/builtin.py; register your own with register_segpc or "
                             "register_coco)")


def dataset_dicts(name: str, where: str = "dataset") -> List[dict]:
    """The records of a registered dataset, refusing an unknown name or an empty dataset."""
    check_dataset_names([name], where)
    records = DatasetCatalog.get(name)
    if not records:
        raise InputError(f"{where}: dataset {name!r} has no images")
    return records
