"""Training and running the detector: its ``Trainer``, the step its precision policy picks, and the detector
as a plain box predictor."""
