#!/usr/bin/env python
"""Issue 31's table in docs/RESULTS.md ("Outlines and nuclei"), from what ``dev/outlines_nuclei.sh`` wrote.

    python -m benchmarks.outlines_nuclei [--run output/issue31] [--report docs/RESULTS.md]

One row per model and val set: SegPC mIoU (official scorer), nucleus mIoU (each annotated nucleus
against the nuclei of the submitted cells), segm AP and where the mIoU falls short. Runs not made yet
are listed under the table, not left out silently.
"""
import argparse
import glob
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

from benchmarks.comparison import replace_section
from benchmarks.shipped_models import SETS, detector_table, read_json
from detectron2_myeloma.engine.trainer import EVALUATION_JSON
from detectron2_myeloma.utils.atomic import write_atomic

VAL_SETS = {k: SETS[k] for k in ("segpc_lowres_val", "segpc_mini_val", "segpc_nikon_val")}
CFG = "configs/SegPC/rmask_rcnn_lite2_fpn_d80"
SYMMETRIES = "TEST.AUG.ENABLED True TEST.AUG.VFLIP True TEST.AUG.ROT90 True"
# The training diameters of the whole-model runs: cells drawn within +-10% of the test diameter.
WHOLE_DIAMETER = {d: "INPUT.CELL_DIAMETER.TRAIN \"({})\" INPUT.CELL_DIAMETER.TEST {}".format(
    ", ".join(f"{f * d:.1f}" for f in (0.9, 0.95, 1.0, 1.05, 1.1)), d) for d in (80, 96, 112)}
# Row name -> (evaluation.json under --run, the command that made it). {seed} rows repeat per seed found.
ROWS: List[Tuple[str, str, str]] = [
    ("shipped `segpc-rmask-lite2`, nucleus by the estimation rule", "shipped_eval/inference",
     f"tools/train_net.py --eval-only --config-file {CFG}.yaml MODEL.WEIGHTS segpc-rmask-lite2"),
    ("shipped `segpc-rmask-lite2-nucleus` (float16 head of the point + nucleus run, seed 1)",
     "shipped_nucleus_eval/inference",
     f"tools/train_net.py --eval-only --config-file {CFG}_point_nucleus.yaml MODEL.WEIGHTS segpc-rmask-lite2-nucleus"),
    ("shipped, tested at 96 px cells (trained at 80)", "shipped_d96_eval/inference",
     f"tools/train_net.py --eval-only --config-file {CFG}.yaml MODEL.WEIGHTS segpc-rmask-lite2 "
     "INPUT.CELL_DIAMETER.TEST 96"),
    ("shipped, tested at 112 px cells (trained at 80)", "shipped_d112_eval/inference",
     f"tools/train_net.py --eval-only --config-file {CFG}.yaml MODEL.WEIGHTS segpc-rmask-lite2 "
     "INPUT.CELL_DIAMETER.TEST 112"),
    ("+800 it: today's head, no nucleus (seed {seed})", "ft_s{seed}/inference",
     f"tools/train_net.py --config-file {CFG}_ft.yaml SEED {{seed}}"),
    ("+800 it: today's head + nucleus (seed {seed})", "nucleus_s{seed}/inference",
     f"tools/train_net.py --config-file {CFG}_nucleus.yaml SEED {{seed}}"),
    ("+800 it: point refinement + nucleus (seed {seed})", "point_nucleus_s{seed}/inference",
     f"tools/train_net.py --config-file {CFG}_point_nucleus.yaml SEED {{seed}}"),
    *[(f"+600 it: whole nucleus model at {d} px cells (seed {{seed}})", f"whole_d{d}_s{{seed}}/inference",
       f"tools/train_net.py --config-file {CFG}_point_nucleus_whole.yaml {WHOLE_DIAMETER[d]} SEED {{seed}}")
      for d in WHOLE_DIAMETER],
    ("+600 it at 80 px, body and box head frozen (seed {seed})", "tuned_d80_s{seed}/inference",
     f"tools/train_net.py --config-file {CFG}_point_nucleus_tuned.yaml SEED {{seed}}"),
    ("+600 it at 80 px, body and box head frozen, TTA 8 symmetries (seed {seed})",
     "tuned_d80_s{seed}_tta8/inference_TTA",
     f"tools/train_net.py --eval-only --config-file {CFG}_point_nucleus_tuned.yaml MODEL.WEIGHTS "
     f"<run>/model_final.pth {SYMMETRIES}"),
    ("today's head + nucleus, TTA 8 symmetries (seed {seed})", "nucleus_s{seed}_tta8/inference_TTA",
     f"tools/train_net.py --eval-only --config-file {CFG}_nucleus.yaml MODEL.WEIGHTS <run>/model_final.pth "
     f"{SYMMETRIES}"),
    ("point refinement + nucleus, TTA 8 symmetries (seed {seed})", "point_nucleus_s{seed}_tta8/inference_TTA",
     f"tools/train_net.py --eval-only --config-file {CFG}_point_nucleus.yaml MODEL.WEIGHTS "
     f"<run>/model_final.pth {SYMMETRIES}"),
    *[(f"whole nucleus model at {d} px cells, TTA 8 symmetries (seed {{seed}})",
       f"whole_d{d}_s{{seed}}_tta8/inference_TTA",
       f"tools/train_net.py --eval-only --config-file {CFG}_point_nucleus_whole.yaml MODEL.WEIGHTS "
       f"<run>/model_final.pth INPUT.CELL_DIAMETER.TEST {d} {SYMMETRIES}")
      for d in WHOLE_DIAMETER],
]


def seeds_in(run: str) -> List[int]:
    """Seeds of the fine-tuning runs under ``run`` (folders ``<variant>_s<seed>``)."""
    found = {int(m.group(1)) for path in glob.glob(os.path.join(run, "*_s*"))
             if (m := re.search(r"_s(\d+)(_tta8)?$", path))}
    return sorted(found) or [1]


def evaluations(run: str) -> Tuple[Dict[str, Optional[Dict]], List[str], List[str]]:
    """({row name: evaluation with the "_TTA" suffix taken off its set names}, commands, missing rows)."""
    found: Dict[str, Optional[Dict]] = {}
    commands, missing = [], []
    for name, folder, command in ROWS:
        for seed in (seeds_in(run) if "{seed}" in name else [None]):
            row, where = name.format(seed=seed), folder.format(seed=seed)
            evaluation = read_json(os.path.join(run, where, EVALUATION_JSON))
            if evaluation is None:
                missing.append(f"{row} (`{where}`)")
                continue
            found[row] = {re.sub(r"_TTA$", "", k): v for k, v in evaluation.items()}
            commands.append(f"- {row}: `{command.format(seed=seed)}`")
    return found, commands, missing


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="output/issue31", help="OUT folder of dev/outlines_nuclei.sh")
    parser.add_argument("--report", default="docs/RESULTS.md", help="markdown file with the table's markers")
    args = parser.parse_args(argv)
    found, commands, missing = evaluations(args.run)
    if not found:
        print(f"error: {args.run}: no evaluation of dev/outlines_nuclei.sh found", file=sys.stderr)
        return 1
    table = detector_table(found, VAL_SETS) + "\nCommands (each fine-tuning run starts from the shipped weights; " \
        "`dev/outlines_nuclei.sh` runs them all):\n\n" + "\n".join(commands) + "\n"
    if missing:
        table += "\nNot run yet: " + "; ".join(missing) + ".\n"
    with open(args.report) as f:
        text = f.read()
    write_atomic(args.report, replace_section(text, "outlines-nuclei", table))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
