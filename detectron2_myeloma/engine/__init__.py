"""Training loops beside Detectron2's: the cell classifier's, and the CPU pieces of the detector's."""
