"""The edge / centred split of benchmarks/classifier_edges.py: which windows leave the frame, and the
error counts of each class on each side."""
import numpy as np

from benchmarks.classifier_edges import edge_split, leaves_image
from detectron2_myeloma.classifier.crops import square_crop_box


def test_edge_cells_are_those_whose_centred_window_leaves_the_frame():
    hw = (1536, 2040)
    assert not leaves_image(square_crop_box((800, 600, 1120, 920), hw, 0.15, 640), hw)  # centre (960, 760)
    assert leaves_image(square_crop_box((100, 600, 420, 920), hw, 0.15, 640), hw)  # 260 px from the left
    assert leaves_image(square_crop_box((1700, 1300, 2000, 1500), hw, 0.15, 640), hw)  # bottom-right corner


def test_errors_are_counted_per_class_and_side():
    labels = np.array([1, 1, 1, 0, 0, 0])
    probs = np.array([0.2, 0.9, 0.4, 0.7, 0.1, 0.6])
    edge = np.array([True, True, False, True, False, False])
    assert edge_split(labels, probs, edge, 0.5) == {
        "edge": {"myeloma called other": [1, 2], "other called myeloma": [1, 1]},
        "centred": {"myeloma called other": [1, 1], "other called myeloma": [1, 2]}}
