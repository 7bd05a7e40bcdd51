"""Training: the detector's ``Trainer`` and the step its precision policy picks, the cell classifier's loop."""
