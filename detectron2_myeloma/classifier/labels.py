"""The classifier's label space: the names that its crop folders, checkpoints and metrics, and the labels
that the post-hook writes on detections, all agree on."""

CLASS_NAMES = ("non_myeloma", "myeloma")  # label index = position; 1 is the positive class
MYELOMA = CLASS_NAMES.index("myeloma")
NOT_CLASSIFIED = -1  # pred_cell_labels of detections that are not cells (their probability is NaN)
