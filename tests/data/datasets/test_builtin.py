"""Builtin registrations: names, metadata (cell diameters), the fixed splits and the held-out frames."""
import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import detectron2_myeloma  # noqa: F401
from detectron2_myeloma.data.datasets.builtin import (FULL_SIZE_VAL_IDS, LOWRES_CELL_DIAMETERS, SEGPC_MINI_TRAIN_IDS,
                                             SEGPC_MINI_VAL_IDS, SEGPC_NIKON_VAL_IDS, register_segpc)
from detectron2_myeloma.data.images import read_record_image
from detectron2_myeloma.data.report import DatasetError
from detectron2_myeloma.data.datasets.segpc import segpc_microscope
from detectron2_myeloma.data.statistics import median_cell_diameter


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


def test_held_out_frames_are_in_no_training_set_at_any_resolution(shared_segpc):
    lowres = {d["image_id"] for d in DatasetCatalog.get("segpc_lowres_train")}
    assert set(FULL_SIZE_VAL_IDS) <= lowres  # the reduced set holds copies of every held-out frame
    for name in ("segpc_lowres_train_fit", "segpc_nikon_fit", "segpc_mini_train"):
        assert not {d["image_id"] for d in DatasetCatalog.get(name)} & set(FULL_SIZE_VAL_IDS), name
    assert [d["image_id"] for d in DatasetCatalog.get("segpc_nikon_val")] == list(SEGPC_NIKON_VAL_IDS)
    nikon = {d["image_id"] for d in DatasetCatalog.get("segpc_nikon_train")}
    assert nikon == {d["image_id"] for d in DatasetCatalog.get("segpc_nikon_fit")} | set(SEGPC_NIKON_VAL_IDS)


@pytest.mark.parametrize("name, measured_on", [
    ("segpc_mini_train", ("segpc_mini_train", "segpc_mini_val")),
    ("segpc_nikon_fit", ("segpc_nikon_train",)),
])
def test_cell_diameter_metadata_is_the_measured_median(name, measured_on, request):
    if name != "segpc_mini_train":
        request.getfixturevalue("shared_segpc")
    records = [r for dataset in measured_on for r in DatasetCatalog.get(dataset)]
    assert MetadataCatalog.get(name).cell_diameter == pytest.approx(median_cell_diameter(records), abs=1.0)
    assert {r["cell_diameter"] for r in DatasetCatalog.get(name)} == {MetadataCatalog.get(name).cell_diameter}


def test_reduced_frames_carry_their_microscopes_cell_diameter(shared_segpc):
    """segpc_lowres reduces Olympus frames 4x and Nikon frames 5x: one diameter for all would put the
    two microscopes' cells at scales 20% apart."""
    assert MetadataCatalog.get("segpc_lowres_val").cell_diameter == pytest.approx(
        median_cell_diameter(DatasetCatalog.get("segpc_lowres_val")), abs=1.0)
    train = DatasetCatalog.get("segpc_lowres_train")
    nikon_full_size = {d["image_id"] for d in DatasetCatalog.get("segpc_nikon_train")}
    assert {segpc_microscope(i) for i in nikon_full_size} == {"nikon"}
    assert {segpc_microscope(d["image_id"]) for d in DatasetCatalog.get("segpc_mini_train")} == {"olympus"}
    for microscope, diameter in LOWRES_CELL_DIAMETERS.items():
        records = [r for r in train if segpc_microscope(r["image_id"]) == microscope]
        assert median_cell_diameter(records) == pytest.approx(diameter, abs=0.5)
        assert {r["cell_diameter"] for r in records} == {diameter}
    parts = {m: DatasetCatalog.get(f"segpc_lowres_val_{m}") for m in LOWRES_CELL_DIAMETERS}
    assert {m: {segpc_microscope(r["image_id"]) for r in records} for m, records in parts.items()} == {
        m: {m} for m in LOWRES_CELL_DIAMETERS}
    assert sum(len(records) for records in parts.values()) == 139
    # the reduction factors of the two cameras (512/2040 vs 512/2560), within what cell samples allow
    assert LOWRES_CELL_DIAMETERS["nikon"] / LOWRES_CELL_DIAMETERS["olympus"] == pytest.approx(2040 / 2560, abs=0.05)


def test_lowres_records_describe_the_frame(shared_segpc):
    records = DatasetCatalog.get("segpc_lowres_val")
    assert len(records) == 139 and sum(len(r["annotations"]) for r in records) == 691
    assert {tuple(r["crop"]) for r in records} == {(0, 64, 512, 448)}
    image = cv2.imread(records[0]["file_name"])
    padding = np.concatenate([image[:56], image[456:]]).reshape(-1, 3).astype(int)  # beyond JPEG ringing
    assert np.abs(padding - (208, 196, 207)).max() <= 8  # flat canvas colour, no tissue
    assert read_record_image(records[0]).shape == (384, 512, 3)


def test_a_missing_dataset_folder_is_named(tmp_path):
    register_segpc("test_missing_root", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="nowhere/x: SegPC image folder not found"):
        DatasetCatalog.get("test_missing_root")
