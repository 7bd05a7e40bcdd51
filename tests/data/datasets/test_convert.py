"""convert_to_coco: standard COCO json that round-trips every mask, and nothing written on failure."""
import json

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from detectron2_myeloma.data.datasets.coco_io import load_coco_rle
from detectron2_myeloma.data.datasets.mask_folders import load_mask_folders
from detectron2_myeloma.data.masks import rle_to_mask
from detectron2_myeloma.data.report import MASK_OF_SKIPPED_IMAGE, ConversionReport, DatasetError
from detectron2_myeloma.data.segpc_format import read_segpc_mask
from cli import tool_main

convert_main = tool_main("convert_to_coco")


def test_segpc_round_trip_is_lossless(segpc_mini, tmp_path):
    out = tmp_path / "segpc.json"
    assert convert_main(["--format", "segpc", "--input", str(segpc_mini), "--output", str(out)]) == 0
    coco = COCO(str(out))
    assert len(coco.imgs) == 14 and len(coco.anns) == 90
    ann = coco.anns[1]
    assert set(ann) >= {"segmentation", "bbox", "area", "iscrowd", "category_id", "image_id"}
    assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
    # Read back through Detectron2 exactly as a user registering the json would.
    dicts = load_coco_rle(str(out), str(segpc_mini / "x"), "test_segpc_round_trip")
    checked = 0
    for record in dicts:
        assert record["file_name"].startswith(str(segpc_mini / "x"))
        for ann in record["annotations"]:
            source = read_segpc_mask(str(segpc_mini / "y" / f"{ann['segpc_instance']}.png"))
            np.testing.assert_array_equal(rle_to_mask(ann["segmentation"]), source > 0)
            np.testing.assert_array_equal(rle_to_mask(ann["nucleus"]), source == 40)
            checked += 1
    assert checked == 90


def test_failed_conversion_writes_nothing(tiny_segpc, tmp_path):
    out = tmp_path / "out.json"
    out.write_text("previous result")
    cv2.imwrite(str(tiny_segpc / "y" / "a_9.png"), np.full((120, 160), 7, np.uint8))
    assert convert_main(["--format", "segpc", "--input", str(tiny_segpc), "--output", str(out)]) == 1
    assert out.read_text() == "previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "segpc"]  # no temporary left
    assert convert_main(["--format", "segpc", "--input", str(tiny_segpc), "--output", str(out),
                         "--skip-bad"]) == 0
    assert len(json.loads(out.read_text())["annotations"]) == 3


def _mask_folders(root, n_images=2):
    rng = np.random.default_rng(1)
    for i in range(n_images):
        sample = root / f"s{i}"
        (sample / "images").mkdir(parents=True)
        (sample / "masks").mkdir()
        cv2.imwrite(str(sample / "images" / f"s{i}.png"), rng.integers(0, 255, (64, 96, 3), np.uint8))
        for k in range(3):
            mask = np.zeros((64, 96), np.uint8)
            cv2.circle(mask, (15 + 30 * k, 20 + 10 * i), 6 + k, 255, -1)
            cv2.imwrite(str(sample / "masks" / f"m{k}.png"), mask)
    return root


def test_mask_folders_and_coco_polygons(tmp_path):
    root = _mask_folders(tmp_path / "dsb")
    dicts = load_mask_folders(str(root))
    assert [len(d["annotations"]) for d in dicts] == [3, 3]
    expected = cv2.imread(str(root / "s1" / "masks" / "m2.png"), cv2.IMREAD_GRAYSCALE) > 0
    np.testing.assert_array_equal(rle_to_mask(dicts[1]["annotations"][2]["segmentation"]), expected)

    out = tmp_path / "masks.json"
    assert convert_main(["--format", "masks", "--input", str(root), "--output", str(out)]) == 0
    # A COCO file with polygon masks and category id 7 becomes RLE with contiguous ids.
    coco = json.loads(out.read_text())
    coco["categories"][0]["id"] = 7
    for ann in coco["annotations"]:
        ann["category_id"] = 7
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    poly = tmp_path / "poly.json"
    poly.write_text(json.dumps(coco))
    out2 = tmp_path / "poly_rle.json"
    assert convert_main(["--format", "coco", "--input", str(poly), "--image-root", str(root),
                         "--output", str(out2)]) == 0
    result = json.loads(out2.read_text())
    assert {a["category_id"] for a in result["annotations"]} == {1}
    assert all(isinstance(a["segmentation"]["counts"], str) for a in result["annotations"])
    assert result["categories"][0]["name"] == "nucleus"


def test_coco_missing_image_is_named(tmp_path):
    root = _mask_folders(tmp_path / "dsb", n_images=1)
    out = tmp_path / "masks.json"
    assert convert_main(["--format", "masks", "--input", str(root), "--output", str(out)]) == 0
    (root / "s0" / "images" / "s0.png").unlink()
    with pytest.raises(DatasetError, match="s0.png: image listed in .* not found"):
        load_coco_rle(str(out), str(root), "test_coco_missing_image")


def test_coco_truncated_or_resized_image_is_named(tmp_path):
    """A COCO dataset decodes each image when read: a truncated file or one of another size than the
    json says is refused by name, not met half-way through a training."""
    root = _mask_folders(tmp_path / "dsb", n_images=1)
    out = tmp_path / "masks.json"
    assert convert_main(["--format", "masks", "--input", str(root), "--output", str(out)]) == 0
    image = root / "s0" / "images" / "s0.png"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="s0.png: unreadable, truncated or damaged image"):
        load_coco_rle(str(out), str(root), "test_coco_truncated_image")
    cv2.imwrite(str(image), np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"s0.png: image is 12x10 but .* gives"):
        load_coco_rle(str(out), str(root), "test_coco_resized_image")


def test_dsb2018_val_reads_all_nuclei(dsb2018_root):
    dicts = load_coco_rle(str(dsb2018_root / "val.json"), str(dsb2018_root / "val"), "test_dsb_val")
    assert len(dicts) == 100
    assert sum(len(d["annotations"]) for d in dicts) == 4491
    assert max(len(d["annotations"]) for d in dicts) > 100


def test_skip_bad_counts_the_masks_of_a_skipped_image(tmp_path, capsys):
    """--skip-bad: a truncated image's masks are counted as skipped, and the summary is printed once."""
    root = _mask_folders(tmp_path / "dsb")
    image = root / "s0" / "images" / "s0.png"
    image.write_bytes(image.read_bytes()[:200])
    out = tmp_path / "masks.json"
    assert convert_main(["--format", "masks", "--input", str(root), "--output", str(out), "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("1 images, 3 instances, 4 skipped") == 1
    assert "skipped 3 x mask of a skipped image" in printed
    assert len(json.loads(out.read_text())["images"]) == 1


def test_coco_skipped_image_counts_its_annotations(tmp_path):
    root = _mask_folders(tmp_path / "dsb")
    out = tmp_path / "masks.json"
    assert convert_main(["--format", "masks", "--input", str(root), "--output", str(out)]) == 0
    (root / "s0" / "images" / "s0.png").unlink()
    report = ConversionReport()
    dicts = load_coco_rle(str(out), str(root), "test_coco_skipped_image", strict=False, report=report)
    assert len(dicts) == 1 and report.instances == 3
    assert report.skipped_by_reason() == {"image listed in " + str(out) + " not found": 1,
                                          MASK_OF_SKIPPED_IMAGE: 3}
