#!/usr/bin/env python
"""Which cell diameter should the model see? One R-Mask R-CNN training per target diameter on the same
real SegPC-2021 frames (``INPUT.CELL_DIAMETER``), each evaluated on full-size frames it never saw, of both
microscopes, and on the reduced val split; the table goes to docs/RESULTS.md.

    python -m benchmarks.diameter_sweep --diameters 80 128 --iters 300 [--output output/diameter_sweep]

Training crops have the same size at every diameter, so a training step costs about the same; what the
diameter changes is the number of pixels at inference (it grows with the diameter squared). Each run is
``tools/train_net.py`` in a child process; a run with a record in --results is not repeated, an
interrupted one resumes from its last checkpoint.
"""
import argparse
import json
import os
import re
import subprocess
import sys
from typing import Dict, List, Optional

from benchmarks.benchmarking import markdown_table
from benchmarks.comparison import replace_section
from benchmarks.provenance import git_commit
from detectron2_myeloma.engine.trainer import EVALUATION_JSON
from detectron2_myeloma.modeling.precision import cpu_features
from detectron2_myeloma.utils.atomic import write_atomic, write_json_atomic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/SegPC/rmask_rcnn_lite2_fpn.yaml"
TRAIN = ("segpc_lowres_train_fit", "segpc_nikon_fit", "segpc_mini_train")
TEST = ("segpc_mini_val", "segpc_nikon_val", "segpc_lowres_val")
# "Total inference time: 0:00:12.345678 (0.123 s / iter per device" in Detectron2's evaluation log
INFERENCE_TIME = re.compile(r"Inference done on (\S+)|Total inference time: [^(]*\((\S+) s / iter")


def train_args(diameter: float, iters: int, output_dir: str) -> List[str]:
    return ["--config-file", CONFIG, "DATASETS.TRAIN", str(TRAIN), "DATASETS.TEST", str(TEST),
            "INPUT.CELL_DIAMETER.TRAIN", f"({diameter},)", "INPUT.CELL_DIAMETER.TEST", str(diameter),
            "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", f"({int(iters * 0.8)},)",
            "SOLVER.WARMUP_ITERS", str(min(50, iters // 4)), "SOLVER.CHECKPOINT_PERIOD", "100",
            "TEST.EVAL_PERIOD", "0", "SEED", "1", "OUTPUT_DIR", output_dir]


def seconds_per_image(log_file: str) -> Dict[str, float]:
    """Seconds per image of the last evaluation of each test set, as Detectron2 logged them."""
    found: Dict[str, float] = {}
    pending = iter(TEST)
    with open(log_file) as f:
        for line in f:
            match = INFERENCE_TIME.search(line)
            if match and match.group(2):
                name = next(pending, None)
                if name is None:  # a later evaluation: start over
                    pending = iter(TEST)
                    name = next(pending)
                found[name] = float(match.group(2))
    return found


def run(diameter: float, iters: int, output: str, results: str) -> Dict:
    output_dir = os.path.join(output, f"d{diameter:g}")
    record_path = os.path.join(results, f"d{diameter:g}.json")
    if os.path.exists(record_path):
        with open(record_path) as f:
            return json.load(f)
    argv = train_args(diameter, iters, output_dir)
    command = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--resume", *argv]
    print("$ " + " ".join(["python", *command[1:]]), flush=True)
    subprocess.run(command, check=True)
    with open(os.path.join(output_dir, "inference", EVALUATION_JSON)) as f:
        evaluation = json.load(f)
    with open(os.path.join(output_dir, "metrics.json")) as f:
        times = [json.loads(line).get("time") for line in f if '"time"' in line]
    record = {"diameter": diameter, "iterations": iters, "evaluation": evaluation,
              "seconds_per_iteration": times[-1] if times else None,
              "inference_seconds_per_image": seconds_per_image(os.path.join(output_dir, "log.txt")),
              "command": "tools/train_net.py " + " ".join(argv), "commit": git_commit(REPO),
              "cpu": cpu_features().describe()}
    write_json_atomic(record, record_path, indent=1)
    return record


def table(records: List[Dict]) -> str:
    headers = ["target diameter (px)", "s / training iteration"]
    for name in TEST:
        headers += [f"{name} mIoU", f"{name} segm AP", f"{name} s / image"]
    rows = []
    for r in records:
        row = [f"{r['diameter']:g}", f"{r['seconds_per_iteration']:.2f}"]
        for name in TEST:
            result = r["evaluation"].get(name, {})
            row += [f"{result.get('segpc', {}).get('mIoU', float('nan')):.3f}",
                    f"{result.get('segm', {}).get('AP', float('nan')):.1f}",
                    f"{r['inference_seconds_per_image'].get(name, float('nan')):.2f}"]
        rows.append(row)
    return markdown_table(headers, rows) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diameters", nargs="+", type=float, default=[80.0, 128.0])
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--output", default="output/diameter_sweep")
    parser.add_argument("--results", default="docs/diameter_sweep", help="one JSON record per finished run")
    parser.add_argument("--report", default="docs/RESULTS.md", help="markdown file with the sweep's markers")
    args = parser.parse_args(argv)
    records = [run(d, args.iters, args.output, args.results) for d in args.diameters]
    with open(args.report) as f:
        text = f.read()
    write_atomic(args.report, replace_section(text, "diameter-sweep", table(records)))
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
