"""Builtin registrations: names, metadata, and the fixed split of the bundled sample."""
from detectron2.data import DatasetCatalog, MetadataCatalog

import detectron2_myeloma  # noqa: F401
from detectron2_myeloma.data.builtin import SEGPC_MINI_TRAIN_IDS, SEGPC_MINI_VAL_IDS, register_segpc


def test_builtin_names_registered():
    names = set(DatasetCatalog.list())
    assert {"segpc_train", "segpc_val", "segpc_test", "segpc_mini_train", "segpc_mini_val",
            "dsb2018_train", "dsb2018_val"} <= names
    meta = MetadataCatalog.get("segpc_mini_train")
    assert meta.thing_classes == ["cell"] and meta.evaluator_type == "segpc"
    assert len(meta.thing_colors) == 1


def test_mini_split_is_disjoint_and_complete(segpc_mini):
    train = DatasetCatalog.get("segpc_mini_train")
    val = DatasetCatalog.get("segpc_mini_val")
    assert [d["image_id"] for d in train] == list(SEGPC_MINI_TRAIN_IDS)
    assert [d["image_id"] for d in val] == list(SEGPC_MINI_VAL_IDS)
    assert not set(SEGPC_MINI_TRAIN_IDS) & set(SEGPC_MINI_VAL_IDS)
    assert sum(len(d["annotations"]) for d in train + val) == 90


def test_register_segpc_both_categories(tiny_segpc):
    register_segpc("test_tiny_both", str(tiny_segpc), categories="both")
    assert MetadataCatalog.get("test_tiny_both").thing_classes == ["cell", "nucleus"]
    assert len(DatasetCatalog.get("test_tiny_both")[0]["annotations"]) == 4
