"""Sliced inference: a cell on a tile seam is found once, with the mask it has when seen whole."""
import json

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import tifffile
import torch
from cli import tool_main
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

from detectron2_myeloma import add_myeloma_config
from detectron2_myeloma.data.classes import cell_and_nucleus_classes, model_metadata
from detectron2_myeloma.data.images import image_files
from detectron2_myeloma.data.regions import ArrayRegions, open_regions
from detectron2_myeloma.engine.defaults import setup_inference
from detectron2_myeloma.engine.predictor import build_predictor
from detectron2_myeloma.engine.tiling import TiledPredictor, centre_bounds, tile_starts
from detectron2_myeloma.export.predictions import RESULTS_JSON

predict = tool_main("predict")


@pytest.mark.parametrize("length,tile,overlap,align", [(1000, 300, 60, 1), (2561, 2560, 640, 128),
                                                       (8160, 2560, 640, 128), (301, 300, 299, 1), (5000, 700, 90, 37)])
def test_tiles_cover_the_axis_overlap_enough_and_own_each_pixel_once(length, tile, overlap, align):
    starts = tile_starts(length, tile, overlap, align)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(s % align == 0 for s in starts[:-1])
    assert all(a + tile - b >= overlap for a, b in zip(starts, starts[1:]))
    owners = np.zeros(length, int)
    for lo, hi in centre_bounds(starts, tile, length):
        owners[(np.arange(length) + 0.5 >= lo) & (np.arange(length) + 0.5 < hi)] += 1
    assert (owners == 1).all()
    assert tile_starts(tile, tile, overlap) == [0]


class BlobDetector:
    """A stand-in model (no backbone, so no tile alignment): every blob of a tile (connected component of non-white pixels) is a cell, with
    its exact mask, including blobs the tile's edge cuts, as a real detector reports them."""

    cell_diameter = 40.0

    def __init__(self):
        self.batches = []  # the number of images of each forward

    def predict_batch(self, images, cell_diameters, mask_crops=False, post_hooks=True, augment=True):
        self.batches.append(len(images))
        return [self(image) for image in images]

    def __call__(self, image, cell_diameter=None, mask_crops=False, post_hooks=True, augment=True):  # (full masks)
        count, labels = cv2.connectedComponents((image.min(axis=2) < 128).astype(np.uint8))
        masks = np.stack([labels == k for k in range(1, count)]) if count > 1 else np.zeros((0, *labels.shape), bool)
        boxes = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] for ys, xs in (np.nonzero(m) for m in masks)]
        instances = Instances(labels.shape, pred_masks=torch.from_numpy(masks),
                              pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
                              scores=torch.full((len(masks),), 0.9), pred_classes=torch.zeros(len(masks), dtype=torch.long))
        return {"instances": instances}


def tiling_cfg(size: int, overlap: float):
    cfg = get_cfg()
    add_myeloma_config(cfg)
    cfg.INPUT.CELL_DIAMETER.TEST = 20.0  # the model sees cells at half size: tiles are 2 * size image px
    cfg.TEST.TILES.SIZE, cfg.TEST.TILES.OVERLAP = size, overlap
    return cfg


def blobs_image(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = np.full((700, 900, 3), 255, np.uint8)
    truth = []
    for _ in range(200):  # irregular cells up to 40 px (one diameter) across, not touching each other
        mask = np.zeros(image.shape[:2], np.uint8)
        centre = (int(rng.integers(25, 875)), int(rng.integers(25, 675)))
        cv2.ellipse(mask, centre, (int(rng.integers(6, 20)), int(rng.integers(6, 20))), float(rng.integers(180)),
                    0, 360, 1, -1)
        if any((cv2.dilate(mask, np.ones((5, 5), np.uint8)) & t).any() for t in truth):
            continue
        truth.append(mask)
        image[mask > 0] = 0
    return image, truth


def test_blobs_on_every_seam_are_found_once_and_whole():
    image, truth = blobs_image()
    predictor = TiledPredictor(BlobDetector(), tiling_cfg(size=100, overlap=1.5), 0, 40.0)  # 200 px tiles, 60 px overlap
    assert predictor.tile_size(40.0) == 200
    found = predictor(ArrayRegions("blobs.png", image))
    assert len(found) == len(truth)
    full = [found.union_mask([i]) for i in range(len(found))]
    for t in truth:
        matches = [m for m in full if (m & (t > 0)).any()]
        assert len(matches) == 1 and np.array_equal(matches[0], t > 0)


def test_tiles_and_frames_go_through_the_model_in_batches_of_one_size():
    """TEST.IMS_PER_BATCH: a large image's tiles, and images of one size and scale, several per forward;
    the detections are those of one image per forward."""
    image, _ = blobs_image()
    cfg = tiling_cfg(size=100, overlap=1.5)
    one = TiledPredictor(BlobDetector(), cfg, 0, 40.0)(ArrayRegions("blobs.png", image))
    cfg.TEST.IMS_PER_BATCH = 4
    detector = BlobDetector()
    predictor = TiledPredictor(detector, cfg, 0, 40.0)
    batched = predictor(ArrayRegions("blobs.png", image))
    assert detector.batches == [4] * 8 + [3]  # 5 x 7 tiles of 200 px
    assert np.array_equal(batched.boxes, one.boxes) and len(batched) == len(one)
    detector.batches.clear()
    frames = [ArrayRegions(f"{k}.png", image[:150, 100 * k:100 * k + 190]) for k in range(5)]
    odd = ArrayRegions("odd.png", image[:120, :190])
    found = predictor.predict_all([(f, predictor.cell_scale(f)) for f in frames[:3]] + [(odd, predictor.cell_scale(odd))]
                                  + [(f, predictor.cell_scale(f)) for f in frames[3:]])
    assert detector.batches == [4, 1, 1]  # frames of 150 x 190 px: 4 then 1; the odd size alone
    for regions, detections in zip(frames[:3] + [odd] + frames[3:], found):
        assert np.array_equal(detections.boxes, predictor(regions).boxes), regions.path
    cfg.TEST.IMS_PER_BATCH = -1
    with pytest.raises(ValueError, match="TEST.IMS_PER_BATCH"):
        TiledPredictor(detector, cfg, 0, 40.0)


def test_an_image_that_fits_a_tile_is_predicted_whole():
    image = np.full((150, 190, 3), 255, np.uint8)
    image[0:10, 0:10] = image[140:150, 180:190] = 0  # blobs on the image's own edges are kept
    found = TiledPredictor(BlobDetector(), tiling_cfg(size=100, overlap=1.5), 0, 40.0)(ArrayRegions("small.png", image))
    assert len(found) == 2


def mosaic(frames, rows: int, cols: int) -> np.ndarray:
    return np.concatenate([np.concatenate(frames[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)


def away_from_frame_edges(box, frame_hw, margin: int = 100) -> bool:
    """Whether a box (mosaic coordinates) lies inside one frame of the mosaic, ``margin`` from its edges:
    there the neighbour frame cannot change what the model sees."""
    h, w = frame_hw
    x0, y0, x1, y1 = box
    return (x0 % w >= margin and y0 % h >= margin and x1 // w == x0 // w and y1 // h == y0 // h
            and x1 % w <= w - margin and y1 % h <= h - margin)


def test_a_mosaic_of_real_frames_finds_each_cell_of_the_frames_once(segpc_mini, tmp_path):
    """The shipped model on a 2x2 mosaic of bundled frames, cut to 1920x1536 (multiples of the tiles'
    alignment, so each frame sits on the feature grid it has alone), 3840x3072 px in 2x2 tiles whose
    seams cross the frames: every cell it finds in a frame alone, away from the frame's edges
    (where the mosaic's neighbour frame changes what it sees), it finds once in the mosaic, with a mask
    of IoU >= 0.9; and no cell twice: two overlapping cells of the mosaic are two cells of the frame
    alone (the model's own overlapping answers), never one cell reported from two tiles. Also through
    tools/predict.py from a tiled TIFF."""
    paths = image_files(str(segpc_mini / "x"))[:4]
    frames = [cv2.imread(p)[:, :1920] for p in paths]
    frame_hw = frames[0].shape[:2]
    cfg = setup_inference(None, [], score_threshold=0.3)
    cell_class, _ = cell_and_nucleus_classes(model_metadata(cfg, None).thing_classes)
    predictor = TiledPredictor(build_predictor(cfg, cell_class), cfg, cell_class, 319.9)
    big = mosaic(frames, 2, 2)
    assert max(big.shape) > predictor.tile_size(319.9) >= max(frame_hw)
    assert predictor.alignment(319.9) == 128 and not (np.array(frame_hw) % 128).any()
    found = predictor(ArrayRegions("mosaic.png", big))
    cells = np.flatnonzero(found.classes == cell_class)
    rles = [found.masks[i].rle(found.image_size) for i in cells]

    alone_rles, alone_scores, alone_boxes = [], [], []
    for index, frame in enumerate(frames):
        alone = predictor(ArrayRegions(paths[index], frame))
        oy, ox = (index // 2) * frame_hw[0], (index % 2) * frame_hw[1]
        for i in np.flatnonzero(alone.classes == cell_class):
            alone_rles.append(alone.masks[i].shifted(oy, ox).rle(found.image_size))
            alone_scores.append(alone.scores[i])
            alone_boxes.append(alone.boxes[i] + np.array([ox, oy, ox, oy]))
    to_alone = mask_util.iou(rles, alone_rles, [0] * len(alone_rles))  # mosaic cells x frame-alone cells
    checked = 0
    for j in range(len(alone_rles)):
        if alone_scores[j] >= 0.5 and away_from_frame_edges(alone_boxes[j], frame_hw):
            assert (to_alone[:, j] >= 0.9).sum() == 1, (alone_boxes[j], np.sort(to_alone[:, j])[-2:])
            checked += 1
    assert checked >= 12
    pairs = mask_util.iou(rles, rles, [0] * len(rles)) - np.eye(len(rles))
    for a, b in zip(*np.nonzero(np.triu(pairs) >= 0.3)):
        if away_from_frame_edges(found.boxes[cells[a]], frame_hw):
            ja, jb = to_alone[a].argmax(), to_alone[b].argmax()
            assert ja != jb and to_alone[a, ja] >= 0.8 and to_alone[b, jb] >= 0.8, (found.boxes[cells[[a, b]]])

    tiff = tmp_path / "x" / "mosaic.tif"
    tiff.parent.mkdir()
    tifffile.imwrite(tiff, big[:, :, ::-1], tile=(512, 512), compression="zlib", photometric="rgb")
    assert type(open_regions(str(tiff))).__name__ == "TiffRegions"
    assert predict(["--input", str(tiff.parent), "--output", str(tmp_path / "out"), "--cell-diameter", "319.9",
                    "--score-threshold", "0.3"]) == 0
    results = json.loads((tmp_path / "out" / RESULTS_JSON).read_text())
    assert sum(r["category_id"] == cell_class + 1 for r in results) == len(cells)
    features = json.loads((tmp_path / "out" / "mosaic.geojson").read_text())["features"]
    assert len(features) == len(cells)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # a SegPC-style x/ folder is named by its parents, not "x"
    assert (report["case"], report["images"], report["cells"]) == (f"{tmp_path.parent.name}/{tmp_path.name}", 1,
                                                                   len(cells))
    assert report["myeloma"] + report["other"] == len(cells)  # the shipped classifier labels every cell
    assert "not a diagnosis" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")])])
def test_frames_four_per_forward_find_the_cells_of_one_per_forward(segpc_mini, device):
    """The shipped model on 4 bundled frames, 4 per forward (TEST.IMS_PER_BATCH, CUDA's default) and 1 per
    forward: the same cells, masks and scores within the noise of another batch shape."""
    paths = image_files(str(segpc_mini / "x"))[:4]
    found = {}
    for per_batch in (1, 4):
        cfg = setup_inference(None, ["MODEL.DEVICE", device, "TEST.IMS_PER_BATCH", per_batch], score_threshold=0.5)
        cell_class, _ = cell_and_nucleus_classes(model_metadata(cfg, None).thing_classes)
        predictor = TiledPredictor(build_predictor(cfg, cell_class), cfg, cell_class)
        images = [ArrayRegions(path, cv2.imread(path)) for path in paths]
        found[per_batch] = predictor.predict_all([(regions, predictor.cell_scale(regions)) for regions in images])
    for path, one, four in zip(paths, found[1], found[4]):
        assert len(one) == len(four) > 2, path
        assert np.allclose(one.scores, four.scores, atol=0.02), path
        iou = mask_util.iou([m.rle(one.image_size) for m in four.masks], [m.rle(one.image_size) for m in one.masks],
                            [0] * len(one))
        assert (np.diag(iou) >= 0.95).all(), (path, np.diag(iou))
