"""The cell classifier post-hook: crops from the full-resolution image, bit-identical to the saved
training crops, fields added to the detections, nuclei left unclassified, non-myeloma cells dropped on
request, detector outputs and checkpoints untouched, the same answers on CUDA, and clear errors."""
from typing import Any, Dict

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from classifier_testutils import SEGPC_MINI
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detector_testutils import cpu_and_cuda_twins, tiny_cfg
from testutils import assert_float32_fields, assert_twin_detections, write_tiny_classifier

from detectron2_myeloma.classifier.crops import crop_and_resize, pad_colour, square_crop_box
from detectron2_myeloma.classifier.dataset import image_candidates, read_manifest
from detectron2_myeloma.classifier.hook import CellClassifierHook
from detectron2_myeloma.classifier.labels import CLASS_NAMES
from detectron2_myeloma.classifier.model import CellClassifier, load_classifier
from detectron2_myeloma.classifier.negatives import CellSizePrior
from detectron2_myeloma.utils.errors import InputError

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
    """The classifier on crop_and_resize crops of the 3xHxW uint8 RGB ``image``."""
    rgb = image.permute(1, 2, 0).numpy()
    margin, size = classifier.crop_margin, classifier.input_size
    return classifier.classify(np.stack([crop_and_resize(rgb, box, margin, size) for box in boxes.tolist()]))


def hooked_cfg(classifier_path, **overrides):
    return tiny_cfg({"MODEL.POST_HOOKS": ["CellClassifierHook"], "MODEL.CELL_CLASSIFIER.WEIGHTS": classifier_path,
                     **{f"MODEL.CELL_CLASSIFIER.{k}": v for k, v in overrides.items()}})


def test_model_with_hook(classifier_path, original, tmp_path):
    """Same detector weights with and without the hook: identical detections; the hook only adds its
    fields, from crops of the original image; keep_non_myeloma=False drops exactly the 0 labels."""
    torch.manual_seed(0)
    plain = build_model(tiny_cfg()).eval()
    assert plain.post_hooks == []
    hooked = build_model(hooked_cfg(classifier_path)).eval()
    dropping = build_model(hooked_cfg(classifier_path, KEEP_NON_MYELOMA=False)).eval()
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


def cutting_classifier(size: int, margin: float) -> CellClassifier:
    """A classifier that cuts ``size`` px crops with ``margin``; its net is never run."""
    return CellClassifier(torch.nn.Identity(), [0.0] * 3, [1.0] * 3, size, margin)


def real_image_boxes(segpc_image):
    rng = np.random.default_rng(3)
    height, width = segpc_image.shape[:2]
    boxes = [[rng.uniform(-20, width), rng.uniform(-20, height)] for _ in range(20)]
    boxes = [[x, y, x + rng.uniform(1, 400), y + rng.uniform(1, 400)] for x, y in boxes]
    boxes += [[0, 0, 30, 30], [width - 400, height - 300, width, height], [10, 10, 10.5, 10.5],
              [0, 0, width, height], [300, 200, 640, 560]]  # corners, tiny, padded, a cell-sized box
    return torch.tensor(boxes, dtype=torch.float32)  # as the detector gives them


@pytest.fixture(scope="module")
def segpc_image():
    return cv2.imread(str(SEGPC_MINI / "x" / "1991.jpg"))[:600, :800]  # a corner: small padded crops


@pytest.mark.parametrize("size, margin", [(64, 0.15), (128, 0.0), (300, 0.3)])
@pytest.mark.parametrize("input_format", ["RGB", "BGR"])
def test_hook_cuts_the_training_crops(segpc_image, size, margin, input_format):
    """Corner, padded, tiny and cell-sized boxes, shrunk and enlarged: the crops the hook classifies are
    bit for bit what build_crop_dataset saves for those boxes (crop_and_resize of the BGR image), in RGB."""
    boxes = real_image_boxes(segpc_image)
    saved = np.stack([crop_and_resize(segpc_image, box, margin, size) for box in boxes.tolist()])
    image = segpc_image[..., ::-1] if input_format == "RGB" else segpc_image
    inputs = {"original_image": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)}
    hook = CellClassifierHook(classifier=cutting_classifier(size, margin), input_format=input_format)
    crops = hook.cell_crops(inputs, boxes, segpc_image.shape[:2])
    assert crops.dtype == np.uint8 and crops.shape == (len(boxes), size, size, 3)
    np.testing.assert_array_equal(crops, saved[..., ::-1])
    assert hook.cell_crops(inputs, boxes[:0], segpc_image.shape[:2]).shape == (0, size, size, 3)


def test_hook_crops_equal_the_saved_crops(small_crops, segpc_records):
    """Every crop of a val image of a real crop folder (annotated cells and stain negatives at float
    boxes), recut by the hook from the image file, equals the saved PNG exactly."""
    record = segpc_records["2048"]
    prior = CellSizePrior.from_dataset([segpc_records["1991"], segpc_records["2042"]])  # as small_crops
    image = cv2.imread(record["file_name"])
    candidates = image_candidates(record, image, prior, None, 0.3)
    paths = [f"val/{CLASS_NAMES[label]}/2048_{n}.png" for n, (_, label, _) in enumerate(candidates)]
    assert sorted(paths) == sorted(r["path"] for r in read_manifest(str(small_crops), "val"))
    assert {source for _, _, source in candidates} == {"annotation", "stain_heuristic"}
    boxes = torch.tensor(np.stack([box for box, _, _ in candidates]))
    hook = CellClassifierHook(classifier=cutting_classifier(64, 0.15))
    crops = hook.cell_crops({"file_name": record["file_name"]}, boxes, image.shape[:2])
    for path, crop in zip(paths, crops):
        np.testing.assert_array_equal(crop, cv2.imread(str(small_crops / path))[..., ::-1], err_msg=path)


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


def test_the_classifier_runs_in_the_bodys_precision(classifier_path, original):
    """On the CPU the body, and so the classifier, stays float32 under a bfloat16 policy: the same
    probabilities to the bit; the hook reads its dtype from TEST.AMP.ENABLED."""
    classifier = load_classifier(classifier_path, "cpu")
    inputs = [{"original_image": original}]
    float32, bfloat16 = (CellClassifierHook(classifier=classifier, inference_dtype=dtype)
                         for dtype in (None, torch.bfloat16))
    probs = [hook(inputs, [{"instances": hand_made_instances([0, 0, 0])}])[0]["instances"].pred_cell_probs
             for hook in (float32, bfloat16)]
    assert probs[1].dtype == torch.float32 and torch.equal(probs[0], probs[1])
    cfg = hooked_cfg(classifier_path)
    cfg.TEST.AMP.ENABLED = True
    assert build_model(cfg).post_hooks[0].inference_dtype == torch.bfloat16


def test_missing_or_mismatched_image_is_a_clear_error(classifier_path, original):
    hook = CellClassifierHook(classifier=load_classifier(classifier_path, "cpu"))
    with pytest.raises(ValueError, match="original_image"):
        hook([{"image": original.float()}], [{"instances": hand_made_instances([0, 1])}])
    with pytest.raises(ValueError, match=r"\(256, 320\) frame"):
        hook([{"original_image": original[:, :128]}], [{"instances": hand_made_instances([0, 1])}])


def test_enabled_without_weights_fails_at_build_time(tmp_path):
    with pytest.raises(InputError, match="MODEL.CELL_CLASSIFIER.WEIGHTS is empty"):
        build_model(tiny_cfg({"MODEL.POST_HOOKS": ["CellClassifierHook"]}))
    with pytest.raises(InputError, match="MODEL.CELL_CLASSIFIER.WEIGHTS .*missing.pth"):
        build_model(hooked_cfg(str(tmp_path / "missing.pth")))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cell_classifier_hook_on_cuda_matches_cpu(original, tmp_path):
    path = str(write_tiny_classifier(tmp_path / "model_best.pth"))
    on_cuda = {"MODEL.POST_HOOKS": ["CellClassifierHook"], "MODEL.CELL_CLASSIFIER.WEIGHTS": path, "MODEL.DEVICE": "cuda"}
    cpu, cuda = cpu_and_cuda_twins(hooked_cfg(path), tiny_cfg(on_cuda))
    assert next(cuda.post_hooks[0].classifier.parameters()).device.type == "cuda"
    with torch.no_grad():
        reference, = cpu([model_input(original)])
        labelled, = cuda([model_input(original)])
    reference, labelled = reference["instances"], labelled["instances"].to("cpu")
    assert_float32_fields(labelled)
    twin = assert_twin_detections(labelled, reference)
    cells = labelled.pred_classes[:5] == 0
    torch.testing.assert_close(labelled.pred_cell_probs[:5][cells], reference.pred_cell_probs[twin][cells],
                               rtol=0, atol=0.02)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_classifier_in_bfloat16_on_cuda_stays_near_float32(classifier_path, original):
    classifier = load_classifier(classifier_path, "cuda")
    inputs = [{"original_image": original}]
    probs = [hook(inputs, [{"instances": hand_made_instances([0] * 6).to("cuda")}])[0]["instances"].pred_cell_probs
             for hook in (CellClassifierHook(classifier=classifier, inference_dtype=dtype)
                          for dtype in (None, torch.bfloat16))]
    assert probs[1].dtype == torch.float32
    torch.testing.assert_close(probs[1], probs[0], rtol=0, atol=0.02)


def test_physical_scale_crops_follow_the_inputs_cell_diameter(segpc_image):
    """A classifier of INPUT.CROP_DIAMETERS crops cuts squares of that many of the input's median cell
    diameters (what OriginalImagePredictor and the dataset records give), as build_crop_dataset does."""
    boxes = real_image_boxes(segpc_image)[:6]
    classifier = CellClassifier(torch.nn.Identity(), [0.0] * 3, [1.0] * 3, 48, 0.15, crop_diameters=2.0)
    hook = CellClassifierHook(classifier=classifier, input_format="BGR")
    inputs = {"original_image": torch.from_numpy(np.ascontiguousarray(segpc_image)).permute(2, 0, 1)}
    crops = hook.cell_crops({**inputs, "cell_diameter": 80.0}, boxes, segpc_image.shape[:2])
    expected = [crop_and_resize(segpc_image, box, 0.15, 48, side=160.0)[..., ::-1] for box in boxes.tolist()]
    np.testing.assert_array_equal(crops, np.stack(expected))
    with pytest.raises(InputError, match="--cell-diameter"):
        hook.cell_crops(inputs, boxes, segpc_image.shape[:2])


def test_neighbours_at_a_corner_get_centred_padded_crops(segpc_image):
    """Issue 30, through the hook: two neighbouring cells at the image's corner, physical-scale crops
    (2 diameters of 80 px): each crop is its own, centred on its cell, and where the square leaves the
    image it is flat, the pad colour of the part inside (as the training crops are)."""
    boxes = torch.tensor([[5.0, 8.0, 75.0, 80.0], [40.0, 20.0, 110.0, 90.0]])
    classifier = CellClassifier(torch.nn.Identity(), [0.0] * 3, [1.0] * 3, 160, 0.15, crop_diameters=2.0)
    hook = CellClassifierHook(classifier=classifier, input_format="BGR")
    inputs = {"original_image": torch.from_numpy(np.ascontiguousarray(segpc_image)).permute(2, 0, 1),
              "cell_diameter": 80.0}
    crops = hook.cell_crops(inputs, boxes, segpc_image.shape[:2])  # RGB, 160 px: no resampling
    assert not np.array_equal(crops[0], crops[1])
    for box, crop in zip(boxes.tolist(), crops):
        x0, y0, x1, y1 = square_crop_box(box, segpc_image.shape[:2], 0.15, 160.0)
        assert abs((x0 + x1) / 2 - (box[0] + box[2]) / 2) <= 0.5 and abs((y0 + y1) / 2 - (box[1] + box[3]) / 2) <= 0.5
        assert x0 < 0 and y0 < 0
        inside = segpc_image[:y1, :x1, ::-1]
        np.testing.assert_array_equal(crop[-y0:, -x0:], inside)
        outside = np.ones((160, 160), bool)
        outside[-y0:, -x0:] = False
        assert (crop[outside] == pad_colour(inside)).all()
