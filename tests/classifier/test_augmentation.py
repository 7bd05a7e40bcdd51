"""Crop augmentation: flips and rotations are exact, the jitter shares the detector's unit and checks,
and a fixed seed repeats the augmented batches, DataLoader workers included."""
import pytest
import torch
from classifier_testutils import small_cfg

from detectron2_myeloma.classifier.augmentation import build_crop_augmentation
from detectron2_myeloma.classifier.dataset import CropDataset
from detectron2_myeloma.classifier.trainer import build_train_loader

NO_JITTER = {"AUG.BRIGHTNESS": 0.0, "AUG.CONTRAST": 0.0, "AUG.SATURATION": 0.0, "AUG.HUE": 0.0}


def test_flips_and_rotations_are_exact_and_all_drawn():
    crop = torch.randint(0, 256, (3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    dihedral = [torch.rot90(image, k, dims=(-2, -1)) for image in (crop, crop.flip(-1)) for k in range(4)]
    augment = build_crop_augmentation(small_cfg(**NO_JITTER).AUG)
    torch.manual_seed(0)
    drawn = set()
    for _ in range(200):
        out = augment(crop)
        matches = [i for i, image in enumerate(dihedral) if torch.equal(out, image)]
        assert len(matches) == 1
        drawn.add(matches[0])
    assert drawn == set(range(8))


def test_everything_off_is_the_identity():
    off = {**NO_JITTER, "AUG.HFLIP": False, "AUG.VFLIP": False, "AUG.ROT90": False}
    crop = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    assert torch.equal(build_crop_augmentation(small_cfg(**off).AUG)(crop), crop)


def test_hue_outside_the_circle_is_refused():
    with pytest.raises(ValueError, match=r"AUG.HUE must be a fraction of the hue circle in \[0, 0.5\]"):
        build_crop_augmentation(small_cfg(**{"AUG.HUE": 4.0}).AUG)


def test_a_fixed_seed_repeats_the_augmented_batches(small_crops):
    """Two loaders of the same SEED, each with a worker process, give the same augmented crops."""
    cfg = small_cfg(**{"DATALOADER.NUM_WORKERS": 1, "SOLVER.BATCH_SIZE": 8})
    dataset = CropDataset(str(small_crops), "train", build_crop_augmentation(cfg.AUG))
    first, second = (next(iter(build_train_loader(cfg, dataset))) for _ in range(2))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    plain = CropDataset(str(small_crops), "train")
    augmented = torch.stack([dataset[i][0] for i in range(8)])
    assert not torch.equal(augmented, torch.stack([plain[i][0] for i in range(8)]))  # it does augment
