"""Test-time augmentation (engine/tta.py): one view = the model itself, views undone exactly, and the
merged prediction of a symmetric set of views turns with the image."""
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detector_testutils import ADAPTIVE_HEAD, synthetic_batch, tiny_cfg
from testutils import single_torch_thread

from detectron2_myeloma.engine.tta import CellTTA, unview_grids, view_transforms
from detectron2_myeloma.structures import NUCLEUS_MASKS

one_torch_thread = pytest.fixture(autouse=True)(single_torch_thread)
SYMMETRIES = {"TEST.AUG.ENABLED": True, "TEST.AUG.FLIP": True, "TEST.AUG.VFLIP": True, "TEST.AUG.ROT90": True}


def model_and_cfg(overrides):
    cfg = tiny_cfg({**ADAPTIVE_HEAD, "MODEL.ROI_MASK_HEAD.NUCLEUS": True,
                    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.3, **overrides})
    torch.manual_seed(0)
    return build_model(cfg).eval(), cfg


def inputs():
    return [{"image": item["image"], "height": item["height"], "width": item["width"]}
            for item in synthetic_batch()[:1]]


def test_views_are_the_symmetries_at_each_scale():
    views = view_transforms(40, 60, hflip=True, vflip=True, rot90=True, factors=(1.0, 0.5))
    assert len(views) == 16 and not views[0].transforms
    image = np.arange(40 * 60, dtype=np.float32).reshape(40, 60)
    seen = {view.apply_image(image).tobytes() for view in views[:8]}
    assert len(seen) == 8  # 8 different pictures of the same square grid's symmetries
    with pytest.raises(ValueError, match="must be positive"):
        view_transforms(40, 60, False, False, False, (0.0,))


def test_each_view_is_undone_on_the_mask_grid():
    """A box covering the whole image: its mask grid in a view is the view of the grid."""
    grid = torch.rand(1, 2, 12, 12)
    for view in view_transforms(12, 12, hflip=True, vflip=True, rot90=True, factors=(1.0,)):
        in_view = torch.as_tensor(view.apply_image(grid[0].permute(1, 2, 0).numpy()).copy()).permute(2, 0, 1)[None]
        assert torch.equal(unview_grids(in_view, view), grid)


def test_one_view_is_the_model_itself():
    model, cfg = model_and_cfg({"TEST.AUG.ENABLED": True, "TEST.AUG.FLIP": False})
    with torch.no_grad():
        plain = model(inputs())[0]["instances"]
        augmented = CellTTA(model, cfg)(inputs())[0]["instances"]
    assert len(plain) > 0
    for field in ("scores", "pred_masks", NUCLEUS_MASKS):
        assert torch.equal(plain.get(field), augmented.get(field)), field


def test_symmetric_views_turn_with_the_image():
    """The 8 views of a turned image are the 8 views of the image: the merged cells turn with it."""
    model, cfg = model_and_cfg(SYMMETRIES)
    tta = CellTTA(model, cfg)
    image = inputs()
    turned = [{**image[0], "image": torch.rot90(image[0]["image"], 1, dims=(1, 2)),
               "height": image[0]["width"], "width": image[0]["height"]}]
    with torch.no_grad():
        upright = tta(image)[0]["instances"]
        rotated = tta(turned)[0]["instances"]
        plain = model(image)[0]["instances"]
    assert len(upright) > 0 and len(upright) == len(rotated)
    order_a, order_b = upright.scores.argsort(), rotated.scores.argsort()
    torch.testing.assert_close(upright.scores[order_a], rotated.scores[order_b])
    for field in ("pred_masks", NUCLEUS_MASKS):
        a, b = upright.get(field)[order_a], torch.rot90(rotated.get(field)[order_b], -1, dims=(1, 2))
        assert (a != b).float().mean() < 0.001, field  # pasting may round a border pixel differently
    # Averaging changed the masks: they are not the plain model's.
    assert len(plain) != len(upright) or not torch.equal(plain.pred_masks, upright.pred_masks)


def test_views_of_one_shape_go_through_the_model_together():
    """TEST.IMS_PER_BATCH 4: the 8 views in 2 forwards (each of views of one shape), merged as when
    each view has a forward of its own."""
    model, cfg = model_and_cfg(SYMMETRIES)
    with torch.no_grad():
        alone = CellTTA(model, cfg)(inputs())[0]["instances"]
        cfg.TEST.IMS_PER_BATCH = 4
        batches = []
        detect = model.detect
        model.detect = lambda batch: batches.append(len(batch)) or detect(batch)
        together = CellTTA(model, cfg)(inputs())[0]["instances"]
    assert batches == [4, 4] and len(alone) > 0
    assert torch.allclose(together.scores, alone.scores, atol=1e-5)
    for field in ("pred_masks", NUCLEUS_MASKS):
        assert torch.allclose(together.get(field), alone.get(field), atol=1e-4), field
