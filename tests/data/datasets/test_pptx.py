"""The MiMM_SBILab PowerPoint reader, on decks built here with python-pptx.

Every kept mask is compared with the shape's geometry computed independently: each image pixel centre
is mapped back onto the slide (through the picture's position, size and crop, then any group
transforms and rotations) and tested against the analytic ellipse / rectangle / polygon.
"""
import logging
import os
import shutil
import zipfile

import pytest
from pptx import Presentation

from detectron2_myeloma.data.masks import rle_to_mask
from detectron2_myeloma.data.datasets.pptx import load_pptx_dataset
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
    with caplog.at_level(logging.INFO, logger="detectron2_myeloma.data.datasets.pptx"):
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
    assert err.value.problem.startswith("not a PowerPoint .pptx file (not a zip archive")
    assert "Package not found" not in str(err.value)
    with zipfile.ZipFile(tmp_path / "other.pptx", "w") as other:  # a zip, but not a presentation
        other.writestr("notes.txt", "hello")
    with pytest.raises(DatasetError, match=r"other\.pptx: not a PowerPoint \.pptx file \(KeyError"):
        load_pptx_dataset(str(tmp_path / "other.pptx"), None, str(tmp_path / "x"))
    # A folder of decks, not strict: the broken deck is reported, the good one still read.
    folder = tmp_path / "decks"
    folder.mkdir()
    shutil.copy(main["decks"] / "deck.pptx", folder / "deck.pptx")
    (folder / "zz_broken.pptx").write_bytes(b"this is not a zip archive")
    report = ConversionReport()
    dataset = load_pptx_dataset(str(folder), None, str(tmp_path / "x"), strict=False, report=report)
    assert [d["image_id"] for d in dataset] == ["deck_s1", "deck_s2", "deck_s4_p1", "deck_s4_p2"]
    assert report.images == 4
    broken_skips = [w for w, r in report.skipped if r.startswith("not a PowerPoint .pptx file")]
    assert broken_skips == [str(folder / "zz_broken.pptx")]


def truncated_picture_deck(path):
    """A one-slide deck whose embedded JPEG lost its second half (python-pptx reads only the header)."""
    jpeg = write_png(path.parent / f"{path.stem}_pic.jpg")
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) // 2])
    return build_single_deck(path, jpeg)


def test_truncated_embedded_picture_is_refused(tmp_path):
    """The embedded picture is decoded by the shared reader before it is extracted: refused, naming the
    deck, slide and picture; nothing is left in the extraction folder."""
    deck, extracted = tmp_path / "cut.pptx", tmp_path / "extracted"
    truncated_picture_deck(deck)
    with pytest.raises(DatasetError) as err:
        load_pptx_dataset(str(deck), None, str(extracted))
    assert str(err.value).startswith(f"{deck} slide 1 shape ")
    assert "embedded picture (.jpg) cannot be read: unreadable, truncated" in str(err.value)
    assert not extracted.exists()
    report = ConversionReport()
    assert load_pptx_dataset(str(deck), None, str(extracted), strict=False, report=report) == []
    assert report.skipped_by_reason()["its picture was left out"] == 2  # its two marks are counted
    assert not extracted.exists()


def test_external_image_problem_is_named(tmp_path):
    """An external image that matches the picture but cannot be read is refused with the reader's reason."""
    build_single_deck(tmp_path / "single.pptx", write_png(tmp_path / "pic.png"))
    images = tmp_path / "images"
    images.mkdir()
    data = write_png(images / "pic.png").read_bytes()
    (images / "pic.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cannot read image .*pic\.png: unreadable, truncated"):
        load_pptx_dataset(str(tmp_path / "single.pptx"), str(images), str(tmp_path / "x"))


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


def error_line(capsys) -> str:
    """The one line a tool printed on stderr for a user error (after any progress bars)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


def test_convert_empty_deck_or_deck_without_picture_fails(tmp_path, capsys):
    """Nothing to convert is an error: exit 1, one line naming the deck, nothing written."""
    convert_main = tool_main("convert_to_coco")
    empty, blank = tmp_path / "empty.pptx", tmp_path / "blank.pptx"
    Presentation().save(str(empty))
    prs = Presentation()
    prs.slides.add_slide(prs.slide_layouts[6])
    prs.save(str(blank))
    out = tmp_path / "out" / "mimm.json"
    assert convert_main(["--format", "pptx", "--input", str(empty), "--output", str(out)]) == 1
    assert error_line(capsys) == (f"error: {empty}: no image to convert (expected slides with a picture of the "
                                  f"cells); nothing was written to {out}")
    assert convert_main(["--format", "pptx", "--input", str(blank), "--output", str(out)]) == 1
    assert error_line(capsys).startswith(f"error: {blank}: no image to convert (expected slides with a picture "
                                         "of the cells); skipped 1 x slide has no picture; nothing was written")
    assert not (tmp_path / "out").exists()


def test_failed_folder_conversion_removes_extracted_pictures(tmp_path, capsys):
    """A deck that fails after another was extracted: the pictures extracted are removed, files that
    were there before are kept."""
    convert_main = tool_main("convert_to_coco")
    decks = tmp_path / "decks"
    decks.mkdir()
    build_single_deck(decks / "a.pptx", write_png(tmp_path / "pic.png"))
    truncated_picture_deck(decks / "b.pptx")
    (decks / "b_pic.jpg").unlink()
    out = tmp_path / "out" / "mimm.json"
    args = ["--format", "pptx", "--input", str(decks), "--output", str(out)]
    assert convert_main(args) == 1
    assert error_line(capsys).startswith(f"error: {decks / 'b.pptx'} slide 1 shape ")
    assert not (tmp_path / "out").exists()
    (tmp_path / "out" / "images").mkdir(parents=True)
    (tmp_path / "out" / "images" / "earlier.png").write_bytes(b"kept")
    assert convert_main(args) == 1
    capsys.readouterr()
    assert os.listdir(tmp_path / "out") == ["images"]
    assert os.listdir(tmp_path / "out" / "images") == ["earlier.png"]
    # Skipping the bad deck's picture: the good deck is converted, its marks and the picture counted.
    assert convert_main(args + ["--skip-bad"]) == 0
    assert sorted(os.listdir(tmp_path / "out" / "images")) == ["a_s1.png", "earlier.png"]
    assert "skipped 2 x its picture was left out" in capsys.readouterr().out
