"""Training loops that are not Detectron2 trainers (the cell classifier's)."""
