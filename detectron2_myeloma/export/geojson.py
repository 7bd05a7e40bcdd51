"""Cells as GeoJSON that QuPath imports as objects (File > Import objects from file, or drag and drop).

One FeatureCollection per image (RFC 7946 layout), one Feature per detected cell: its outline in image
pixels (origin at the top-left corner of the top-left pixel, QuPath's convention), holes kept, and in
``properties`` QuPath's ``objectType``, the cell classifier's answer as ``classification`` and the
numbers a pathologist sorts by as ``measurements``. A ``"cell"`` object also carries its nucleus as the
Feature's ``nucleusGeometry``, where QuPath reads it.
"""
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from ..classifier.labels import NOT_CLASSIFIED
from ..structures import CellDetections, MaskCrop
from .overlays import MYELOMA_COLOURS

OBJECT_TYPES = ("detection", "annotation", "cell")
CLASSIFICATION_NAMES = {1: "Myeloma", 0: "Other cell"}
# Outlines are the masks' exact pixel edges simplified by at most this many pixels: far fewer vertices
# (a file QuPath opens quickly for thousands of cells) for a boundary that moves under a pixel.
SIMPLIFY_PX = 0.5
_ID_NAMESPACE = uuid.UUID("6f1c2d7e-5a7b-4c1e-9d0e-8a5f3c2b1d40")  # stable object ids across runs


def mask_geometry(crop: MaskCrop, simplify: float = SIMPLIFY_PX) -> Optional[BaseGeometry]:
    """The outline of a mask in image pixels: a Polygon, or a MultiPolygon when the mask has several
    parts; holes kept, exteriors counter-clockwise and holes clockwise (RFC 7946), valid. None for an
    empty mask. Built from the mask's row runs, so before simplification it covers exactly its pixels."""
    if crop.area == 0:
        return None
    padded = np.pad(crop.mask, ((0, 0), (1, 1))).astype(np.int8)
    rows, edges = np.nonzero(np.diff(padded, axis=1))
    starts, ends = edges[0::2], edges[1::2]  # runs [start, end) alternate in each row
    runs = shapely.box(crop.x + starts, crop.y + rows[0::2], crop.x + ends, crop.y + rows[0::2] + 1)
    geometry = shapely.union_all(runs)
    if simplify > 0:
        geometry = geometry.simplify(simplify, preserve_topology=True)
    return _polygonal(geometry if geometry.is_valid else shapely.make_valid(geometry))


def cell_features(detections: CellDetections, cell_class: int, nucleus_class: Optional[int],
                  object_type: str = "detection", pixel_size_um: Optional[float] = None,
                  id_prefix: str = "", pairs: Optional[Sequence[Tuple[int, Optional[MaskCrop]]]] = None
                  ) -> List[Dict[str, Any]]:
    """GeoJSON Features of the cells of one image (see the module docstring). Measurements: cell and
    nucleus area in pixels (and in um^2 with ``pixel_size_um``, the side of a pixel in micrometres),
    nucleus / cell area, detector score and, where the classifier ran, myeloma probability. The nucleus
    is the cell's own predicted one, else the nucleus detection mostly inside the cell
    (:meth:`~detectron2_myeloma.structures.CellDetections.cell_nuclei`; none: no nucleus measurements);
    ``pairs`` is that method's answer, when the caller has it already. ``id_prefix`` (e.g. the image id)
    makes each Feature's UUID stable across runs and unique across images."""
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object type must be one of {', '.join(OBJECT_TYPES)}, got {object_type!r}")
    features: List[Dict[str, Any]] = []
    if pairs is None:
        pairs = detections.cell_nuclei(cell_class, nucleus_class)
    for cell, nucleus in pairs:
        geometry = mask_geometry(detections.masks[cell])
        if geometry is None:
            continue
        area = detections.masks[cell].area
        measurements: Dict[str, float] = {"Cell area px": float(area)}
        nucleus_geometry = None
        if nucleus is not None:
            measurements["Nucleus area px"] = float(nucleus.area)
            measurements["Nucleus/Cell area ratio"] = round(nucleus.area / area, 4)
            if object_type == "cell":
                nucleus_geometry = mask_geometry(nucleus)
                if nucleus_geometry is not None:  # QuPath wants the nucleus inside its cell
                    nucleus_geometry = _polygonal(nucleus_geometry.intersection(geometry))
        if pixel_size_um:
            for name in [n for n in measurements if n.endswith(" area px")]:
                measurements[name.replace(" px", " um^2")] = round(measurements[name] * pixel_size_um ** 2, 3)
        measurements["Detection score"] = round(float(detections.scores[cell]), 4)
        properties: Dict[str, Any] = {"objectType": object_type}
        label = None if detections.labels is None else int(detections.labels[cell])
        if label is not None and label != NOT_CLASSIFIED:
            properties["classification"] = {"name": CLASSIFICATION_NAMES[label],
                                            "color": [round(255 * c) for c in MYELOMA_COLOURS[label]]}
            if detections.probs is not None:
                measurements["Myeloma probability"] = round(float(detections.probs[cell]), 4)
        properties["measurements"] = measurements
        feature: Dict[str, Any] = {"type": "Feature", "id": str(uuid.uuid5(_ID_NAMESPACE, f"{id_prefix}/{cell}")),
                                   "geometry": mapping(geometry)}
        if nucleus_geometry is not None:
            feature["nucleusGeometry"] = mapping(nucleus_geometry)
        feature["properties"] = properties
        features.append(feature)
    return features


def _polygonal(geometry: BaseGeometry) -> Optional[BaseGeometry]:
    """The polygons of a geometry (an intersection or a repair may add stray lines and points) as one
    Polygon or MultiPolygon, oriented as RFC 7946 asks; None when there are none."""
    polygons, stack = [], [geometry]
    while stack:
        part = stack.pop()
        if part.geom_type == "Polygon" and not part.is_empty:
            polygons.append(orient(part, sign=1.0))
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            stack.extend(reversed(shapely.get_parts(part).tolist()))
    if not polygons:
        return None
    return polygons[0] if len(polygons) == 1 else shapely.MultiPolygon(polygons)


def feature_collection(features: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}
