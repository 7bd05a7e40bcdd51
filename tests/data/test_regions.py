"""Region reads of large images give the pixels read_image gives, for every TIFF layout tifffile writes."""
import cv2
import numpy as np
import pytest
import tifffile

from detectron2_myeloma.data.images import read_image
from detectron2_myeloma.data import regions as regions_module
from detectron2_myeloma.data.regions import ArrayRegions, TiffRegions, open_regions
from detectron2_myeloma.data.report import DatasetError

RNG = np.random.default_rng(0)
RGB = (RNG.random((1000, 700, 3)) * 255).astype(np.uint8)
REGIONS = [(0, 1000, 0, 700), (100, 613, 250, 699), (999, 1000, 0, 1), (-5, 30, 690, 900)]
LAYOUTS = {
    "tiled deflate": dict(data=RGB, tile=(256, 256), compression="zlib", photometric="rgb"),
    "strips": dict(data=RGB, rowsperstrip=100, photometric="rgb"),
    "planar": dict(data=np.moveaxis(RGB, -1, 0), photometric="rgb", planarconfig="separate", tile=(256, 256)),
    "12-bit grey": dict(data=RGB[..., 0].astype(np.uint16) * 16, tile=(256, 256)),
    "jpeg": dict(data=RGB, tile=(256, 256), compression="jpeg", photometric="rgb"),
    "rgba": dict(data=np.dstack([RGB, RGB[..., :1]]), tile=(128, 128), photometric="rgb", extrasamples=["unassalpha"]),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tiff_regions_are_read_image_crops(tmp_path, layout):
    path = str(tmp_path / "image.tif")
    options = dict(LAYOUTS[layout])
    tifffile.imwrite(path, options.pop("data"), **options)
    full = read_image(path)
    with open_regions(path) as regions:
        assert isinstance(regions, TiffRegions) and regions.shape == (1000, 700)
        for y0, y1, x0, x1 in REGIONS:
            assert np.array_equal(regions.read(y0, y1, x0, x1), full[max(0, y0):y1, x0:x1])
        preview = regions.preview(0.3)
    assert np.array_equal(preview, cv2.resize(full, (210, 300), interpolation=cv2.INTER_AREA))


def test_a_pyramid_is_read_at_full_resolution_only(tmp_path):
    path = str(tmp_path / "slide.ome.tif")
    with tifffile.TiffWriter(path) as writer:
        writer.write(RGB, tile=(256, 256), subifds=1, photometric="rgb")
        writer.write(RGB[::2, ::2], tile=(256, 256), subfiletype=1, photometric="rgb")
    with open_regions(path) as regions:
        assert isinstance(regions, TiffRegions) and regions.shape == (1000, 700)
        assert np.array_equal(regions.read(0, 1000, 0, 700), RGB[:, :, ::-1])


def test_other_formats_are_decoded_whole(tmp_path):
    path = str(tmp_path / "image.png")
    cv2.imwrite(path, RGB)
    with open_regions(path) as regions:
        assert isinstance(regions, ArrayRegions)
        assert np.array_equal(regions.read(10, 20, 30, 40), RGB[10:20, 30:40])


def test_a_damaged_tile_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.tif"
    tifffile.imwrite(path, RGB, tile=(256, 256), compression="zlib", photometric="rgb")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[5]
    data = bytearray(path.read_bytes())
    data[offset:offset + 64] = b"\xff" * 64  # tile 5's deflate stream
    path.write_bytes(bytes(data))
    with open_regions(str(path)) as regions:
        regions.read(0, 10, 0, 10)  # tile 0 is intact
        with pytest.raises(DatasetError, match="broken.tif"):
            regions.read(256, 512, 512, 700)  # tile 5: row 1, column 2


@pytest.mark.parametrize("scale", [0.25, 0.3, 0.01])
def test_a_preview_resized_block_by_block_matches_the_whole_image_resized(tmp_path, monkeypatch, scale):
    monkeypatch.setattr(regions_module, "PREVIEW_BLOCK", 256)  # 4 x 3 blocks of the 1000 x 700 image
    ys, xs = np.mgrid[0:1000, 0:700]
    smooth = np.dstack([ys * 255 // 999, xs * 255 // 699, (ys + xs) * 255 // 1698]).astype(np.uint8)
    for name, data in (("noise", RGB), ("smooth", smooth)):
        path = str(tmp_path / f"{name}.tif")
        tifffile.imwrite(path, data, tile=(128, 128), photometric="rgb")
        whole = cv2.resize(data[:, :, ::-1], (max(1, round(700 * scale)), max(1, round(1000 * scale))),
                           interpolation=cv2.INTER_AREA)
        with open_regions(path) as regions:
            preview = regions.preview(scale)
        assert preview.shape == whole.shape
        difference = np.abs(preview.astype(int) - whole)
        if scale == 0.25:  # blocks of 256 px shrink to exactly 64: the same pixel sums
            assert np.array_equal(preview, whole), name
        elif name == "smooth":  # a seam may move a preview pixel's footprint by under one image pixel
            assert difference.max() <= 2
