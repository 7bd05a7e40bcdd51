"""GeoJSON for QuPath: every bundled real cell outline read back with shapely matches its mask."""
import json

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from detectron2_myeloma.data.images import image_files, image_stem
from detectron2_myeloma.data.segpc_format import cell_and_nucleus, read_segpc_mask
from detectron2_myeloma.export.geojson import cell_features, feature_collection, mask_geometry
from detectron2_myeloma.structures import CellDetections, MaskCrop

CELL, NUCLEUS = 0, 1


def exact_outline(mask: np.ndarray):
    return mask_geometry(MaskCrop.from_full(mask), simplify=0)


def bundled_cells(segpc_mini) -> CellDetections:
    """The ground-truth cells and nuclei of the first bundled image, as a detector would report them,
    labelled myeloma / other in turn."""
    masks, classes = [], []
    first = image_stem(image_files(str(segpc_mini / "x"))[0])
    for mask_path in sorted((segpc_mini / "y").glob(f"{first}_*")):
        cell, nucleus = cell_and_nucleus(read_segpc_mask(str(mask_path)))
        masks += [cell, nucleus]
        classes += [CELL, NUCLEUS]
    n = len(masks)
    crops = [MaskCrop.from_full(m) for m in masks]
    return CellDetections(masks[0].shape, np.zeros((n, 4), np.float32), np.array(classes),
                          np.linspace(0.99, 0.6, n).astype(np.float32), crops,
                          np.where(np.arange(n) % 4 == 0, 1, 0), np.linspace(0.9, 0.1, n).astype(np.float32))


def test_exact_outline_covers_exactly_the_mask_pixels():
    mask = np.zeros((30, 30), bool)
    mask[5:25, 5:25] = True
    mask[10:15, 10:15] = False  # a hole
    mask[27, 27] = True  # a second part
    mask[4, 4] = True  # touches the square at a corner only
    geometry = exact_outline(mask)
    assert geometry.is_valid and geometry.area == mask.sum()
    square = max(geometry.geoms, key=lambda p: p.area)
    assert len(square.interiors) == 1 and square.exterior.is_ccw and not square.interiors[0].is_ccw


@pytest.mark.parametrize("object_type", ["detection", "cell"])
def test_every_cell_reads_back_as_its_mask(segpc_mini, tmp_path, object_type):
    detections = bundled_cells(segpc_mini)
    features = cell_features(detections, CELL, NUCLEUS, object_type=object_type, pixel_size_um=0.25,
                             id_prefix="img")
    path = tmp_path / "cells.geojson"
    path.write_text(json.dumps(feature_collection(features)))
    collection = json.loads(path.read_text())
    assert collection["type"] == "FeatureCollection"
    cells = [i for i, c in enumerate(detections.classes) if c == CELL]
    assert len(collection["features"]) == len(cells)
    assert len({f["id"] for f in collection["features"]}) == len(cells)
    for index, feature in zip(cells, collection["features"]):
        geometry = shape(feature["geometry"])
        assert geometry.is_valid and geometry.geom_type in ("Polygon", "MultiPolygon")
        for polygon in getattr(geometry, "geoms", [geometry]):
            assert polygon.exterior.is_ccw and all(not ring.is_ccw for ring in polygon.interiors)
            assert polygon.exterior.coords[0] == polygon.exterior.coords[-1]
        truth = exact_outline(detections.union_mask([index]))
        iou = shapely.intersection(geometry, truth).area / shapely.union(geometry, truth).area
        assert iou >= 0.98, (feature["properties"], iou)
        properties = feature["properties"]
        assert properties["objectType"] == object_type
        label = detections.labels[index]
        assert properties["classification"]["name"] == ("Myeloma" if label == 1 else "Other cell")
        measurements = properties["measurements"]
        area = detections.masks[index].area
        assert measurements["Cell area px"] == area
        assert measurements["Cell area um^2"] == pytest.approx(area * 0.0625, abs=1e-3)
        nucleus_area = detections.masks[index].overlap(detections.masks[index + 1])
        assert measurements["Nucleus area px"] == nucleus_area > 0
        assert measurements["Nucleus/Cell area ratio"] == pytest.approx(nucleus_area / area, abs=1e-4)
        assert measurements["Myeloma probability"] == pytest.approx(detections.probs[index], abs=1e-4)
        if object_type == "cell":
            nucleus = shape(feature["nucleusGeometry"])
            assert nucleus.is_valid and geometry.buffer(1e-6).contains(nucleus)
            assert abs(nucleus.area - nucleus_area) <= 0.05 * nucleus_area
        else:
            assert "nucleusGeometry" not in feature
