"""The cell classifier post-hook: crops from the full-resolution image, fields added to the detections,
nuclei left unclassified, non-myeloma cells dropped on request, detector outputs and checkpoints
untouched, and clear errors."""
from typing import Any, Dict

import cv2
import pytest
import torch
import torch.nn.functional as F
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from testutils import write_tiny_classifier

from detectron2_myeloma.data.crops import crop_and_resize_batch
from detectron2_myeloma.modeling import CellClassifierHook
from detectron2_myeloma.modeling.classifier import CellClassifier, load_classifier

FULL_HW = (256, 320)  # the detector sees the image at half this size
DETECTOR_FIELDS = ("pred_boxes", "scores", "pred_classes", "pred_masks")


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory) -> str:
    return str(write_tiny_classifier(tmp_path_factory.mktemp("classifier") / "model_best.pth"))


@pytest.fixture(scope="module")
def original() -> torch.Tensor:
    """A 3x256x320 uint8 RGB image with per-pixel detail that a half-size copy loses."""
    return torch.randint(0, 256, (3, *FULL_HW), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def model_input(original: torch.Tensor) -> Dict[str, Any]:
    """What OriginalImagePredictor gives the model: the image at half size plus the original."""
    half = (FULL_HW[1] // 2, FULL_HW[0] // 2)
    resized = cv2.resize(original.permute(1, 2, 0).numpy(), half, interpolation=cv2.INTER_AREA)
    return {"image": torch.from_numpy(resized).permute(2, 0, 1).float(), "original_image": original,
            "height": FULL_HW[0], "width": FULL_HW[1]}


def field(instances: Instances, name: str) -> torch.Tensor:
    value = instances.get(name)
    return value.tensor if isinstance(value, Boxes) else value


def expected_probs(classifier: CellClassifier, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    crops = crop_and_resize_batch(image, boxes, classifier.crop_margin, classifier.input_size)
    return classifier.classify(crops)


def hooked_cfg(make_cfg, classifier_path, **overrides):
    return make_cfg({"MODEL.POST_HOOKS": ["CellClassifierHook"], "MODEL.CELL_CLASSIFIER.WEIGHTS": classifier_path,
                     **{f"MODEL.CELL_CLASSIFIER.{k}": v for k, v in overrides.items()}})


def test_model_with_hook(make_cfg, classifier_path, original, tmp_path):
    """Same detector weights with and without the hook: identical detections; the hook only adds its
    fields, from crops of the original image; keep_non_myeloma=False drops exactly the 0 labels."""
    torch.manual_seed(0)
    plain = build_model(make_cfg()).eval()
    assert plain.post_hooks == []
    hooked = build_model(hooked_cfg(make_cfg, classifier_path)).eval()
    dropping = build_model(hooked_cfg(make_cfg, classifier_path, KEEP_NON_MYELOMA=False)).eval()
    classifier = hooked.post_hooks[0].classifier
    classifier_state = {k: v.clone() for k, v in classifier.state_dict().items()}
    # A detector checkpoint neither holds the classifier nor touches it when loaded.
    DetectionCheckpointer(plain, save_dir=str(tmp_path)).save("detector")
    for model in (hooked, dropping):
        DetectionCheckpointer(model).load(str(tmp_path / "detector.pth"))
    assert hooked.state_dict().keys() == plain.state_dict().keys()
    for key, value in classifier.state_dict().items():
        assert torch.equal(value, classifier_state[key]), key

    with torch.no_grad():
        reference, = plain([model_input(original)])
        labelled, = hooked([model_input(original)])
        dropped, = dropping([model_input(original)])
    reference, labelled, dropped = reference["instances"], labelled["instances"], dropped["instances"]
    assert set(reference.get_fields()) == set(DETECTOR_FIELDS)
    assert set(labelled.get_fields()) == {*DETECTOR_FIELDS, "pred_cell_probs", "pred_cell_labels"}
    assert labelled.image_size == FULL_HW
    for name in DETECTOR_FIELDS:
        assert torch.equal(field(reference, name), field(labelled, name)), name

    probs, labels = labelled.pred_cell_probs, labelled.pred_cell_labels
    assert probs.shape == labels.shape == (len(labelled),) and probs.dtype == torch.float32
    assert labels.dtype == torch.int64
    is_cell = labelled.pred_classes == 0
    assert is_cell.any() and (~is_cell).any()
    cell_boxes = labelled.pred_boxes.tensor[is_cell]
    expected = expected_probs(classifier, original, cell_boxes)
    torch.testing.assert_close(probs[is_cell], expected)
    assert torch.equal(labels[is_cell], (expected > classifier.threshold).long())
    assert torch.isnan(probs[~is_cell]).all() and (labels[~is_cell] == -1).all()
    # The detector's resized input, scaled back up, would give other crops and other probabilities.
    upscaled = F.interpolate(model_input(original)["image"][None], size=FULL_HW, mode="bilinear")[0]
    assert not torch.allclose(expected_probs(classifier, upscaled.round().byte(), cell_boxes), expected,
                              atol=1e-3)

    assert 0 < int((labels == 0).sum()) < int(is_cell.sum())  # both labels occur: dropping is tested
    kept = labelled[labels != 0]
    assert len(dropped) == len(kept)
    for name in (*DETECTOR_FIELDS, "pred_cell_labels"):
        assert torch.equal(field(kept, name), field(dropped, name)), name


def hand_made_instances(classes) -> Instances:
    instances = Instances(FULL_HW)
    boxes = torch.tensor([[10.0, 20, 60, 80], [100, 30, 170, 90], [200, 150, 260, 250], [0, 0, 40, 30],
                          [280, 200, 320, 256], [120, 120, 200, 180]])[:len(classes)]
    instances.pred_boxes = Boxes(boxes)
    instances.scores = torch.linspace(0.9, 0.5, len(classes))
    instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return instances


@pytest.mark.parametrize("source", ["original_image RGB", "original_image BGR", "file_name"])
def test_crops_come_from_the_full_resolution_image(classifier_path, original, tmp_path, source):
    classifier = load_classifier(classifier_path, "cpu")
    rgb = original.permute(1, 2, 0).numpy()
    if source == "file_name":
        path = str(tmp_path / "image.png")
        cv2.imwrite(path, rgb[:, :, ::-1])
        inputs, input_format = {"file_name": path}, "RGB"
    else:
        input_format = source.split()[1]
        inputs = {"original_image": original.flip(0) if input_format == "BGR" else original}
    hook = CellClassifierHook(classifier=classifier, cell_class=1, batch_size=2, input_format=input_format)
    instances = hand_made_instances([1, 0, 1, 1, 0, 1])
    result, = hook([inputs], [{"instances": instances}])
    is_cell = instances.pred_classes == 1
    expected = expected_probs(classifier, original, instances.pred_boxes.tensor[is_cell])
    torch.testing.assert_close(result["instances"].pred_cell_probs[is_cell], expected)
    assert (result["instances"].pred_cell_labels[~is_cell] == -1).all()


def test_no_cells_and_no_detections_need_no_image(classifier_path):
    hook = CellClassifierHook(classifier=load_classifier(classifier_path, "cpu"), keep_non_myeloma=False)
    for classes in ([], [1, 1]):
        result, = hook([{}], [{"instances": hand_made_instances(classes)}])
        instances = result["instances"]
        assert len(instances) == len(classes)  # nuclei are kept, never classified
        probs, labels = instances.pred_cell_probs, instances.pred_cell_labels
        assert probs.shape == labels.shape == (len(classes),) and torch.isnan(probs).all()
        assert labels.dtype == torch.int64 and (labels == -1).all()


def test_missing_or_mismatched_image_is_a_clear_error(classifier_path, original):
    hook = CellClassifierHook(classifier=load_classifier(classifier_path, "cpu"))
    with pytest.raises(ValueError, match="original_image"):
        hook([{"image": original.float()}], [{"instances": hand_made_instances([0, 1])}])
    with pytest.raises(ValueError, match=r"\(256, 320\) frame"):
        hook([{"original_image": original[:, :128]}], [{"instances": hand_made_instances([0, 1])}])


def test_enabled_without_weights_fails_at_build_time(make_cfg, tmp_path):
    with pytest.raises(ValueError, match="MODEL.CELL_CLASSIFIER.WEIGHTS is empty"):
        build_model(make_cfg({"MODEL.POST_HOOKS": ["CellClassifierHook"]}))
    with pytest.raises(FileNotFoundError, match="MODEL.CELL_CLASSIFIER.WEIGHTS.*missing.pth"):
        build_model(hooked_cfg(make_cfg, str(tmp_path / "missing.pth")))
