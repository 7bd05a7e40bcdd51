"""Training augmentation of classifier crops, all torchvision v2: its draws come from torch's generator,
which the trainer seeds and DataLoader workers reseed on their own, so a fixed SEED repeats a run."""
from fvcore.common.config import CfgNode
from torchvision.transforms import v2

from ..data.transforms import build_color_jitter


def build_crop_augmentation(aug: CfgNode) -> v2.Transform:
    """Random flips, rot90 and colour jitter of a (3, S, S) uint8 RGB crop tensor, shape and dtype kept
    (``cfg.AUG``).

    Cells have no orientation, and flips and rotations by multiples of 90 degrees are exact on square
    crops (torchvision turns those by transposing, without resampling); the jitter, the detector's
    (:func:`~detectron2_myeloma.data.transforms.build_color_jitter`), mimics stain and illumination changes.
    """
    transforms = []
    if aug.HFLIP:
        transforms.append(v2.RandomHorizontalFlip())
    if aug.VFLIP:
        transforms.append(v2.RandomVerticalFlip())
    if aug.ROT90:
        transforms.append(v2.RandomChoice([v2.RandomRotation((angle, angle)) for angle in (0, 90, 180, 270)]))
    jitter = build_color_jitter(aug, "AUG")
    if jitter is not None:
        transforms.append(jitter)
    return v2.Compose(transforms or [v2.Identity()])
