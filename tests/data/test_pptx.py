"""The MiMM_SBILab PowerPoint reader, on decks built here with python-pptx.

Every kept mask is compared with the shape's geometry computed independently: each image pixel centre
is mapped back onto the slide (through the picture's position, size and crop, then any group
transforms and rotations) and tested against the analytic ellipse / rectangle / polygon.
"""
import logging
import os
import shutil

import pytest
from pptx import Presentation

from detectron2_myeloma.data.masks import rle_to_mask
from detectron2_myeloma.data.pptx import load_pptx_dataset
from detectron2_myeloma.data.report import ConversionReport, DatasetError
from cli import tool_main
from testing.pptx_decks import (
    H,
    P1,
    W,
    build_main_deck,
    build_single_deck,
    iou,
    pixel_centres,
    write_png,
)

@pytest.fixture(scope="module")
def main(tmp_path_factory):
    root = tmp_path_factory.mktemp("pptx")
    png = write_png(root / "pic.png")
    decks = root / "decks"
    decks.mkdir()
    expected = build_main_deck(decks / "deck.pptx", png)
    report = ConversionReport()
    dataset = load_pptx_dataset(str(decks / "deck.pptx"), None, str(root / "extracted"), report=report)
    return dict(root=root, png=png, decks=decks, expected=expected, report=report, dataset=dataset)


def check_masks(record, pic, marks):
    assert sorted(a["source_shape"] for a in record["annotations"]) == sorted(marks)
    X, Y = pixel_centres(pic, record["width"], record["height"])
    for ann in record["annotations"]:
        got = rle_to_mask(ann["segmentation"])
        want = marks[ann["source_shape"]](X, Y)
        assert got.shape == (record["height"], record["width"])
        assert want.sum() > 100
        assert iou(got, want) >= 0.98, (record["image_id"], ann["source_shape"], iou(got, want))

# ----------------------------------------------------------------- tests


def test_every_mark_matches_its_geometry(main):
    dataset = main["dataset"]
    assert [d["image_id"] for d in dataset] == ["deck_s1", "deck_s2", "deck_s4_p1", "deck_s4_p2"]
    for record in dataset:
        assert (record["height"], record["width"]) == (H, W)
        assert record["source_slide"] == int(record["image_id"].split("_s")[1][0])
        check_masks(record, *main["expected"][record["image_id"]])


def test_skips_are_reported_with_reasons(main, caplog):
    report = main["report"]
    assert report.skipped_by_reason() == {"line does not enclose an area": 2, "outside the picture": 1,
                                          "too small to be a cell": 1, "not a mark": 1, "slide has no picture": 1,
                                          "custom geometry uses guide formulas": 1,
                                          "unsupported shape 'cloud'": 1, "hidden shape": 1}
    where = {reason: w for w, reason in report.skipped}
    assert "'outside'" in where["outside the picture"] and "'tiny'" in where["too small to be a cell"]
    assert where["slide has no picture"].endswith("deck.pptx slide 3")
    assert (report.images, report.instances) == (4, 18)
    assert report.instances == sum(len(d["annotations"]) for d in main["dataset"])
    with caplog.at_level(logging.INFO, logger="detectron2_myeloma.data.pptx"):
        load_pptx_dataset(str(main["decks"] / "deck.pptx"), None, str(main["root"] / "again"))
    assert any("deck.pptx slide 1: kept 11 marks" in m and "'too small to be a cell': 1" in m
               for m in caplog.messages)


def test_extracted_images_are_the_embedded_bytes(main):
    png_bytes = main["png"].read_bytes()
    blob = next(s for s in Presentation(str(main["decks"] / "deck.pptx")).slides[0].shapes
                if s.shape_type == 13).image.blob
    assert blob == png_bytes
    for record in main["dataset"]:
        assert os.path.isabs(record["file_name"])
        assert os.path.dirname(record["file_name"]) == str(main["root"] / "extracted")
        assert open(record["file_name"], "rb").read() == png_bytes
    assert sorted(os.listdir(main["root"] / "extracted")) == [f"deck_s{k}.png" for k in ("1", "2", "4_p1", "4_p2")]


def test_corrupt_deck(main, tmp_path):
    broken = tmp_path / "broken.pptx"
    broken.write_bytes(b"this is not a zip archive")
    with pytest.raises(DatasetError) as err:
        load_pptx_dataset(str(broken), None, str(tmp_path / "x"))
    assert err.value.path == str(broken) and str(err.value).startswith(str(broken))
    # A folder of decks, not strict: the broken deck is reported, the good one still read.
    folder = tmp_path / "decks"
    folder.mkdir()
    shutil.copy(main["decks"] / "deck.pptx", folder / "deck.pptx")
    (folder / "zz_broken.pptx").write_bytes(b"this is not a zip archive")
    report = ConversionReport()
    dataset = load_pptx_dataset(str(folder), None, str(tmp_path / "x"), strict=False, report=report)
    assert [d["image_id"] for d in dataset] == ["deck_s1", "deck_s2", "deck_s4_p1", "deck_s4_p2"]
    assert report.images == 4
    broken_skips = [w for w, r in report.skipped if r.startswith("cannot read as PowerPoint")]
    assert broken_skips == [str(folder / "zz_broken.pptx")]


def test_external_image_matched_by_name_and_rescaled(tmp_path):
    marks = build_single_deck(tmp_path / "single.pptx", write_png(tmp_path / "pic.png"))
    images = tmp_path / "images"
    images.mkdir()
    write_png(images / "pic.png", 2 * W, 2 * H, seed=1)  # same name (picture alt text), twice the resolution
    write_png(images / "other.png", W, H)
    dataset = load_pptx_dataset(str(tmp_path / "single.pptx"), str(images), str(tmp_path / "unused"))
    assert [(d["image_id"], d["file_name"], d["height"], d["width"]) for d in dataset] == [
        ("pic", str(images / "pic.png"), 2 * H, 2 * W)]
    check_masks(dataset[0], P1, marks)
    assert not (tmp_path / "unused").exists() or not os.listdir(tmp_path / "unused")

    write_png(images / "pic.png", 2 * W, H)  # stretched: marks cannot be mapped
    with pytest.raises(DatasetError, match="not a rescale"):
        load_pptx_dataset(str(tmp_path / "single.pptx"), str(images), str(tmp_path / "unused"))


def test_external_image_matched_by_size(tmp_path):
    marks = build_single_deck(tmp_path / "single.pptx", write_png(tmp_path / "embedded.png"))
    images = tmp_path / "images"
    images.mkdir()
    write_png(images / "scan_a.png", W, H, seed=2)
    write_png(images / "other.png", 200, 100)
    report = ConversionReport()
    dataset = load_pptx_dataset(str(tmp_path / "single.pptx"), str(images), str(tmp_path / "x"), report=report)
    assert [(d["image_id"], d["file_name"]) for d in dataset] == [("scan_a", str(images / "scan_a.png"))]
    check_masks(dataset[0], P1, marks)
    assert (report.images, report.instances) == (1, 2)

    write_png(images / "scan_b.png", W, H, seed=3)
    with pytest.raises(DatasetError, match="2 images by size"):
        load_pptx_dataset(str(tmp_path / "single.pptx"), str(images), str(tmp_path / "x"))
    report = ConversionReport()
    assert load_pptx_dataset(str(tmp_path / "single.pptx"), str(images), str(tmp_path / "x"),
                             strict=False, report=report) == []
    assert report.images == 0 and "ambiguous" in report.skipped[0][1]

    for name in ("scan_a.png", "scan_b.png"):
        os.remove(images / name)
    with pytest.raises(DatasetError, match="no image in .* is named like the picture or has its size 400x300"):
        load_pptx_dataset(str(tmp_path / "single.pptx"), str(images), str(tmp_path / "x"))


def test_convert_cli_pptx_to_coco(tmp_path):
    """The converter extracts pictures beside the json and writes one COCO instance per kept mark."""
    from pycocotools.coco import COCO

    convert_main = tool_main("convert_to_coco")

    png = write_png(tmp_path / "pic.png")
    expected = build_single_deck(tmp_path / "one.pptx", png)
    out = tmp_path / "out" / "mimm.json"
    assert convert_main(["--format", "pptx", "--input", str(tmp_path / "one.pptx"), "--output", str(out)]) == 0
    coco = COCO(str(out))
    assert len(coco.imgs) == 1 and len(coco.anns) == len(expected)
    image = coco.imgs[1]
    assert (tmp_path / "out" / "images" / image["file_name"]).is_file()
    assert sorted(a["source_shape"] for a in coco.anns.values()) == sorted(expected)
