"""The shared image reader: every kind of file a camera, slide scanner or editor writes is read to the
right pixels or refused with a DatasetError naming it."""
import io
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from detectron2_myeloma.data.images import (decode_image, header_size, image_files, image_size, list_images, read_image,
                                             read_mask)
from detectron2_myeloma.data.report import DatasetError
from detectron2_myeloma.utils.errors import InputError

RNG = np.random.default_rng(0)
RGB = (RNG.random((48, 64, 3)) * 255).astype(np.uint8)
GREY = RGB[:, :, 0].copy()
# Lossy formats are compared on a smooth picture (noise does not survive JPEG).
_ROWS, _COLS = np.mgrid[0:48, 0:64]
SMOOTH = np.dstack([_ROWS * 5, _COLS * 4, 255 - _ROWS * 2 - _COLS * 2]).astype(np.uint8)


def _pil(path, array, fmt, **kw):
    Image.fromarray(array).save(path, fmt, **kw)
    return path


def _bgr(rgb):
    return rgb[:, :, ::-1]


@pytest.mark.parametrize("name,fmt,kw", [("a.bmp", "BMP", {}), ("a.png", "PNG", {}),
                                         ("a.tif", "TIFF", {}), ("a.tif", "TIFF", {"compression": "tiff_lzw"}),
                                         ("a.tif", "TIFF", {"compression": "tiff_adobe_deflate"}),
                                         ("a.webp", "WEBP", {"lossless": True})])
def test_lossless_rgb_reads_exactly(tmp_path, name, fmt, kw):
    path = _pil(tmp_path / name, RGB, fmt, **kw)
    np.testing.assert_array_equal(read_image(path), _bgr(RGB))
    np.testing.assert_array_equal(read_image(path, format="RGB"), RGB)


def test_jpeg_and_a_jpeg_named_png(tmp_path):
    """A file is read by its content, not its extension."""
    path = _pil(tmp_path / "a.png", SMOOTH, "JPEG", quality=98)
    assert np.abs(read_image(path, "RGB").astype(int) - SMOOTH).mean() < 3


def test_grey_palette_and_bilevel_become_three_equal_channels(tmp_path):
    grey = read_image(_pil(tmp_path / "g.png", GREY, "PNG"))
    assert grey.shape == (48, 64, 3) and (grey == GREY[:, :, None]).all()
    palette = Image.fromarray(RGB).quantize(16)
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png", "RGB"), np.asarray(palette.convert("RGB")))
    Image.fromarray(GREY > 127).save(tmp_path / "b.png")
    assert set(np.unique(read_image(tmp_path / "b.png"))) == {0, 255}


def test_alpha_is_laid_on_white(tmp_path):
    rgba = np.dstack([RGB, np.full(GREY.shape, 255, np.uint8)])
    rgba[:10, :, 3] = 0  # transparent rows
    image = read_image(_pil(tmp_path / "a.png", rgba, "PNG"), "RGB")
    assert (image[:10] == 255).all()
    np.testing.assert_array_equal(image[10:], RGB[10:])


def test_cmyk_jpeg(tmp_path):
    Image.fromarray(RGB).convert("CMYK").save(tmp_path / "c.jpg", quality=98)
    assert read_image(tmp_path / "c.jpg").shape == (48, 64, 3)


def test_exif_orientation_is_applied(tmp_path):
    """An editor's "rotate" often only sets the EXIF orientation: read as viewers show it."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(SMOOTH).save(tmp_path / "r.jpg", quality=98, exif=exif)
    image = read_image(tmp_path / "r.jpg", "RGB")
    assert image.shape == (64, 48, 3)
    assert np.abs(image.astype(int) - np.rot90(SMOOTH, -1)).mean() < 3
    assert image_size(tmp_path / "r.jpg") == header_size(tmp_path / "r.jpg") == (64, 48)


def test_the_header_tells_the_size_without_decoding_or_says_it_cannot(tmp_path):
    Image.fromarray(SMOOTH).save(tmp_path / "a.png")
    assert header_size(tmp_path / "a.png") == read_image(tmp_path / "a.png").shape[:2] == (48, 64)
    tifffile.imwrite(tmp_path / "a.tif", SMOOTH)  # TIFF orientation tags are not applied: decode to know
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert header_size(tmp_path / "a.tif") is None and header_size(tmp_path / "bad.jpg") is None


def test_deep_camera_pixels_are_scaled_by_their_bit_depth(tmp_path):
    """A 12-bit camera frame in a 16-bit file fills the 8-bit range instead of staying dark."""
    twelve_bit = (RGB.astype(np.int32) * 4095 // 255).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c12.tif", twelve_bit, photometric="rgb")
    assert np.abs(read_image(tmp_path / "c12.tif", "RGB").astype(int) - RGB).max() <= 1
    grey16 = (GREY.astype(np.uint16) * 257)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert np.abs(read_image(tmp_path / "g16.png")[:, :, 0].astype(int) - GREY).max() <= 1


def test_tiff_layouts(tmp_path):
    planar = np.moveaxis(RGB, -1, 0)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif", "RGB"), RGB)
    tifffile.imwrite(tmp_path / "float.tif", RGB.astype(np.float32) / 255, photometric="rgb")
    assert np.abs(read_image(tmp_path / "float.tif", "RGB").astype(int) - RGB).max() <= 1
    tifffile.imwrite(tmp_path / "jpeg.tif", SMOOTH, photometric="rgb", compression="jpeg")
    assert np.abs(read_image(tmp_path / "jpeg.tif", "RGB").astype(int) - SMOOTH).mean() < 3
    tifffile.imwrite(tmp_path / "ome.ome.tif", RGB[None, None], photometric="rgb", metadata={"axes": "ZCYXS"})
    np.testing.assert_array_equal(read_image(tmp_path / "ome.ome.tif", "RGB"), RGB)


def test_pyramidal_slide_scanner_tiff_reads_the_full_resolution(tmp_path):
    big = np.repeat(np.repeat(RGB, 2, axis=0), 2, axis=1)
    with tifffile.TiffWriter(tmp_path / "slide.tif") as tif:
        tif.write(big, photometric="rgb", tile=(32, 32), subifds=1)
        tif.write(RGB, photometric="rgb", tile=(32, 32), subfiletype=1)
    np.testing.assert_array_equal(read_image(tmp_path / "slide.tif", "RGB"), big)


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("name,fmt", [("a.bmp", "BMP"), ("a.png", "PNG"), ("a.jpg", "JPEG"),
                                      ("a.tif", "TIFF"), ("a.gif", "GIF"), ("a.webp", "WEBP")])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_files_are_refused_by_name(tmp_path, name, fmt, keep):
    path = _truncate(_pil(tmp_path / name, RGB if fmt != "GIF" else GREY, fmt), keep)
    for read in (read_image, read_mask, image_size):
        with pytest.raises(DatasetError) as err:
            read(path)
        assert str(err.value).startswith(str(path)), str(err.value)


def test_tiff_with_truncated_strips_is_refused(tmp_path):
    """tifffile only logs a short strip; the reader makes it an error."""
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, RGB, photometric="rgb", compression="zlib", rowsperstrip=8)
    data = bytearray(path.read_bytes())
    page = tifffile.TiffFile(io.BytesIO(bytes(data))).pages[0]
    offset = page.dataoffsets[2]
    data[offset:offset + page.databytecounts[2]] = b"\x00" * page.databytecounts[2]
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=str(path)):
        read_image(path)


@pytest.mark.parametrize("content,message", [(b"", "empty file"), (b"not an image at all", "unreadable"),
                                             (b"II*\x00garbage", "damaged|unreadable|no image")])
def test_empty_and_non_image_files(tmp_path, content, message):
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message) as err:
        read_image(path)
    assert str(err.value).startswith(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="cannot open image"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DatasetError, match="cannot open image"):
        image_size(tmp_path / "missing.png")


@pytest.mark.parametrize("array,kw,message", [
    (np.stack([GREY] * 5), {}, "several planes"),                      # a z-stack
    (np.dstack([GREY] * 5), {"photometric": "minisblack", "planarconfig": "contig"}, "5 channels"),
    (GREY.astype(np.float32) * 2, {}, "outside \\[0, 1\\]"),
    (GREY.astype(np.int16) - 100, {}, "negative pixel values"),
])
def test_refused_tiff_contents(tmp_path, array, kw, message):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, array, **kw)
    with pytest.raises(DatasetError, match=message) as err:
        read_image(path)
    assert str(err.value).startswith(str(path))


def test_masks_keep_their_values(tmp_path):
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10], mask[6:8, 6:8] = 20, 40
    np.testing.assert_array_equal(read_mask(_pil(tmp_path / "m.png", mask, "PNG")), mask)
    np.testing.assert_array_equal(read_mask(_pil(tmp_path / "m3.bmp", np.dstack([mask] * 3), "BMP")), mask)
    assert decode_image(tmp_path / "m3.bmp").shape == (20, 30, 3)


def test_image_size_sees_a_file_replaced_in_place(tmp_path):
    path = _pil(tmp_path / "a.png", RGB, "PNG")
    assert image_size(path) == (48, 64)
    _truncate(path)
    with pytest.raises(DatasetError):
        image_size(path)


def test_an_image_over_pils_pixel_limit_says_so(tmp_path, monkeypatch):
    path = _pil(tmp_path / "big.png", RGB, "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DatasetError, match="too many pixels to decode whole"):
        read_image(path)


def test_a_folder_whose_images_are_in_subfolders_says_where_they_are(segpc_mini):
    """A dataset's root given for its x/: the error names the subfolders that hold images."""
    with pytest.raises(InputError) as err:
        list_images(str(segpc_mini))
    assert str(err.value) == (f"{segpc_mini}: holds no images, but its subfolders x/, y/ hold 104: pass one of "
                              "them, or add --recursive")
    assert list_images(str(segpc_mini), recursive=True) == [*image_files(str(segpc_mini / "x")),
                                                             *image_files(str(segpc_mini / "y"))]


def test_recursive_listing_is_sorted_and_refuses_a_stem_twice(tmp_path):
    for name in ("b/2.png", "a/c/3.png", "a/1.png", "0.png", ".partial/4.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        _pil(tmp_path / name, GREY, "PNG")
    names = [os.path.relpath(path, tmp_path) for path in list_images(str(tmp_path), recursive=True)]
    assert names == ["0.png", os.path.join("a", "1.png"), os.path.join("a", "c", "3.png"),
                     os.path.join("b", "2.png")]
    _pil(tmp_path / "b" / "1.bmp", GREY, "BMP")
    with pytest.raises(InputError) as err:
        list_images(str(tmp_path), recursive=True)
    assert str(err.value) == (f"{tmp_path / 'b' / '1.bmp'} and {tmp_path / 'a' / '1.png'} share the image "
                              "id '1', which names their outputs")
