"""User errors across the tools: a bad dataset, name, config or option is one line and exit status 1
(a traceback is for bugs), and a tool's normal run prints no third-party warnings."""
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import default_argument_parser

from cli import TOOLS, tool_main
from detectron2_myeloma.data.datasets.builtin import register_segpc

REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGE = REPO / "datasets" / "segpc_mini" / "train" / "x" / "2009.jpg"
build_crops = tool_main("build_crops")
visualize_data = tool_main("visualize_data")


def run_tool(tool, *argv, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("DETECTRON2_MYELOMA_DEBUG", None)
    return subprocess.run([sys.executable, str(TOOLS / f"{tool}.py"), *map(str, argv)], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def register(name, root):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_segpc(name, str(root))
    return name


def test_every_tool_imports_the_warning_filters_first():
    for path in sorted(TOOLS.glob("*.py")):
        if path.name == "_quiet.py":
            continue
        imports = [node for node in ast.parse(path.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert isinstance(imports[0], ast.Import) and imports[0].names[0].name == "_quiet", path.name


def test_a_prediction_run_prints_no_third_party_warnings(tmp_path):
    """The shipped model on a crop of a real frame: the log holds the tool's own lines only."""
    (tmp_path / "x").mkdir()
    cv2.imwrite(str(tmp_path / "x" / "cut.png"), cv2.imread(str(SAMPLE_IMAGE))[600:900, 800:1200])
    done = run_tool("predict", "--input", tmp_path / "x", "--output", tmp_path / "out", "--cell-diameter", 80)
    assert done.returncode == 0, done.stderr[-3000:]
    noise = [line for line in done.stderr.splitlines()
             if "Warning" in line or "warnings.warn" in line or "is_fx_tracing" in line]
    assert noise == []
    assert run_tool("predict", "--help").stderr == ""


def test_train_net_unknown_dataset_is_one_line_with_the_nearest_names(tmp_path):
    done = run_tool("train_net", "--config-file", REPO / "configs" / "SegPC" / "mask_rcnn_lite2_fpn.yaml",
                    "DATASETS.TRAIN", "('segpc_mini_trian',)", "OUTPUT_DIR", tmp_path / "run")
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert line.startswith("error: DATASETS.TRAIN: no dataset named 'segpc_mini_trian' (did you mean segpc_mini_train")
    assert len(line) < 300  # not the list of every registered dataset


def train_net_run():
    spec = importlib.util.spec_from_file_location("tool_train_net", TOOLS / "train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run


@pytest.mark.parametrize("opts,message", [
    (["--eval-only"], "--eval-only needs MODEL.WEIGHTS"),
    (["--config-file", "configs/SegPC/nope.yaml"], "configs/SegPC/nope.yaml: no such config file"),
    (["SOLVER.MAX_ITER", "many"], "config override: Type mismatch"),
    (["MODEL.ROI_MASK_HEAD.POOLER_TYPE", ""], "MaskRCNNConvUpsampleHead reads pooled features"),
    (["--config-file", "configs/SegPC/rmask_rcnn_lite2_fpn.yaml", "MODEL.ROI_MASK_HEAD.POOLER_TYPE", "ROIAlignV2"],
     'POOLER_TYPE "ROIAlignV2": AdaptiveFusionMaskHead pools for itself'),
])
def test_train_net_config_mistakes(tmp_path, capsys, opts, message):
    args = default_argument_parser().parse_args(
        ["--config-file", "configs/SegPC/mask_rcnn_lite2_fpn.yaml", *opts, "OUTPUT_DIR", str(tmp_path / "run")])
    assert train_net_run()(args) == 1
    assert message in one_error_line(capsys.readouterr().err)


def test_train_net_bad_mask_is_one_line_before_training(tiny_segpc, tmp_path, capsys):
    mask = np.zeros((120, 160), np.uint8)
    mask[10:20, 10:20] = 255
    cv2.imwrite(str(tiny_segpc / "y" / "a_3.png"), mask)
    name = register("test_user_errors_bad_mask", tiny_segpc)
    args = default_argument_parser().parse_args(
        ["--config-file", "configs/SegPC/mask_rcnn_lite2_fpn.yaml", "DATASETS.TRAIN", f"('{name}',)",
         "DATASETS.TEST", "()", "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path / "run")])
    assert train_net_run()(args) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {tiny_segpc / 'y' / 'a_3.png'}: mask values must be 0, 20")


def test_train_net_damaged_weights_are_one_line(tmp_path):
    """Random bytes as MODEL.WEIGHTS, for --eval-only and for fine-tuning: named in one line, where
    Detectron2's checkpointer raises PyTorch's unpickling error. (As subprocesses: in-process runs leave
    Detectron2's log handlers on earlier tests' closed streams.)"""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    for mode in (["--eval-only"], []):
        done = run_tool("train_net", "--config-file", REPO / "configs" / "SegPC" / "mask_rcnn_lite2_fpn.yaml", *mode,
                        "MODEL.WEIGHTS", bad, "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", 0,
                        "OUTPUT_DIR", tmp_path / "run")
        assert done.returncode == 1
        assert one_error_line(done.stderr) == f"error: {bad}: not a readable PyTorch checkpoint (UnpicklingError)"


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("tool", ["visualize_data", "build_crops"])
def test_a_truncated_image_in_a_dataset_is_one_line_and_nothing_written(tiny_segpc, tmp_path, capsys, tool):
    bad = truncate(tiny_segpc / "x" / "b.png")
    name = register(f"test_user_errors_truncated_{tool}", tiny_segpc)
    out = tmp_path / "out"
    argv = [name, "--output", str(out)] if tool == "visualize_data" else ["--dataset", name, "--output", str(out)]
    assert tool_main(tool)(argv) == 1
    assert one_error_line(capsys.readouterr().err).startswith(f"error: {bad}: unreadable, truncated or damaged image")
    assert sorted(os.listdir(tmp_path)) == ["segpc"]  # no output folder, not even a partial one


@pytest.mark.parametrize("tool", ["visualize_data", "build_crops"])
def test_unknown_and_empty_datasets(tmp_path, capsys, tool):
    def argv(name):
        return [name, "--output", str(tmp_path / "out")] if tool == "visualize_data" else \
            ["--dataset", name, "--output", str(tmp_path / "out")]

    assert tool_main(tool)(argv("segpc_mini_vall")) == 1
    assert "no dataset named 'segpc_mini_vall' (did you mean segpc_mini_val" in one_error_line(capsys.readouterr().err)
    (tmp_path / "empty" / "x").mkdir(parents=True)
    assert tool_main(tool)(argv(register(f"test_user_errors_empty_{tool}", tmp_path / "empty"))) == 1
    assert "no images" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_build_crops_refuses_a_val_split_of_training_images(tiny_segpc, tmp_path, capsys):
    """The same frame under another file (segpc_lowres holds copies of full-size frames) counts too."""
    copy = tmp_path / "copy"
    (copy / "x").mkdir(parents=True)
    shutil.copytree(tiny_segpc / "y", copy / "y")
    for image_id in "ab":
        shutil.copy(tiny_segpc / "x" / f"{image_id}.png", copy / "x" / f"{image_id}.bmp")
    train, val = register("test_user_errors_train", tiny_segpc), register("test_user_errors_val", copy)
    with pytest.raises(SystemExit):  # the same name: an option error
        build_crops(["--dataset", train, "--val-dataset", train, "--output", str(tmp_path / "out")])
    assert build_crops(["--dataset", train, "--val-dataset", val, "--output", str(tmp_path / "out")]) == 1
    assert "are the same image" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
