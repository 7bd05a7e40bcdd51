#!/usr/bin/env bash
# Issue 31's comparison (docs/RESULTS.md, "Outlines and nuclei"): every head variant fine-tuned from the
# shipped detector with the same 800-iteration schedule (configs/SegPC/rmask_rcnn_lite2_fpn_d80_ft.yaml)
# and seed, then evaluated on the three val sets; test-time augmentation as an --eval-only run; the whole
# nucleus model trained on at three cell diameters. About 18 minutes per head training and 28 per
# whole-model training on 2 CPU cores; each step is skipped when its result exists (trainings resume).
#   [DIAMETERS="96 112"] [WHOLE_DIAMETERS="80 96 112"] bash dev/outlines_nuclei.sh [OUT] [SEEDS]
#   (defaults: output/issue31, "1"; DIAMETERS: test scales of the shipped detector, none by default)
#   python -m benchmarks.outlines_nuclei --run OUT     (writes the table)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-output/issue31}
SEEDS=${2:-1}
mkdir -p "$OUT"
CFG=configs/SegPC/rmask_rcnn_lite2_fpn_d80
SYMMETRIES="TEST.AUG.ENABLED True TEST.AUG.VFLIP True TEST.AUG.ROT90 True"

# The shipped model under today's evaluator (nucleus mIoU of the estimation rule).
[ -f "$OUT/shipped_eval/inference/evaluation.json" ] ||
  $PY tools/train_net.py --eval-only --config-file $CFG.yaml MODEL.WEIGHTS segpc-rmask-lite2 \
    OUTPUT_DIR "$OUT/shipped_eval"
# The shipped detector (trained at 80 px cells) tested at 96 and 112 px: does a larger test scale help?
for diameter in ${DIAMETERS:-}; do
  [ -f "$OUT/shipped_d${diameter}_eval/inference/evaluation.json" ] ||
    $PY tools/train_net.py --eval-only --config-file $CFG.yaml MODEL.WEIGHTS segpc-rmask-lite2 \
      INPUT.CELL_DIAMETER.TEST "$diameter" OUTPUT_DIR "$OUT/shipped_d${diameter}_eval"
done
# The shipped head (models/segpc-rmask-lite2-nucleus: the float16 mask head of point_nucleus_s1).
[ -f "$OUT/shipped_nucleus_eval/inference/evaluation.json" ] ||
  $PY tools/train_net.py --eval-only --config-file ${CFG}_point_nucleus.yaml MODEL.WEIGHTS segpc-rmask-lite2-nucleus \
    OUTPUT_DIR "$OUT/shipped_nucleus_eval"
# Training cell diameter: the whole shipped nucleus model (nothing frozen) trained 600 more iterations at
# cells of 80 px (the control: as much more training at the same scale), 96 and 112 px, each drawn within
# +-10% as in training; then each evaluated with the 8-symmetry TTA. About 28 minutes per training.
for seed in $SEEDS; do
  for diameter in ${WHOLE_DIAMETERS:-80 96 112}; do
    run="$OUT/whole_d${diameter}_s$seed"
    train=$(awk -v d="$diameter" 'BEGIN { printf "(%.1f, %.1f, %.1f, %.1f, %.1f)", .9*d, .95*d, d, 1.05*d, 1.1*d }')
    [ -f "$run/model_final.pth" ] ||
      $PY tools/train_net.py --resume --config-file ${CFG}_point_nucleus_whole.yaml \
        INPUT.CELL_DIAMETER.TRAIN "$train" INPUT.CELL_DIAMETER.TEST "$diameter" OUTPUT_DIR "$run" SEED "$seed"
  done
  # As the 80 px run, with the body and the box head's fully connected layers frozen: what ships.
  [ -f "$OUT/tuned_d80_s$seed/model_final.pth" ] ||
    $PY tools/train_net.py --resume --config-file ${CFG}_point_nucleus_tuned.yaml OUTPUT_DIR "$OUT/tuned_d80_s$seed" \
      SEED "$seed"
  [ -f "$OUT/tuned_d80_s${seed}_tta8/inference_TTA/evaluation.json" ] ||
    $PY tools/train_net.py --eval-only --config-file ${CFG}_point_nucleus_tuned.yaml \
      MODEL.WEIGHTS "$OUT/tuned_d80_s$seed/model_final.pth" $SYMMETRIES OUTPUT_DIR "$OUT/tuned_d80_s${seed}_tta8"
  for diameter in ${WHOLE_DIAMETERS:-80 96 112}; do
    run="$OUT/whole_d${diameter}_s$seed"
    [ -f "${run}_tta8/inference_TTA/evaluation.json" ] ||
      $PY tools/train_net.py --eval-only --config-file ${CFG}_point_nucleus_whole.yaml MODEL.WEIGHTS "$run/model_final.pth" \
        INPUT.CELL_DIAMETER.TEST "$diameter" $SYMMETRIES OUTPUT_DIR "${run}_tta8"
  done
done
for seed in $SEEDS; do
  for variant in point_nucleus nucleus ft; do  # refinement + nucleus; today's head + nucleus; today's head
    run="$OUT/${variant}_s$seed"
    [ -f "$run/model_final.pth" ] ||
      $PY tools/train_net.py --resume --config-file ${CFG}_$variant.yaml OUTPUT_DIR "$run" SEED "$seed"
  done
  for variant in point_nucleus nucleus; do
    run="$OUT/${variant}_s$seed"
    [ -f "${run}_tta8/inference_TTA/evaluation.json" ] ||
      $PY tools/train_net.py --eval-only --config-file ${CFG}_$variant.yaml MODEL.WEIGHTS "$run/model_final.pth" \
        $SYMMETRIES OUTPUT_DIR "${run}_tta8"
  done
done
# The shipped head was exported from the seed-1 point + nucleus run with
#   $PY tools/export_weights.py --input $OUT/point_nucleus_s1/model_final.pth \
#     --output models/segpc-rmask-lite2-nucleus/mask_head_fp16.pth --only roi_heads.mask_head. --base segpc-rmask-lite2
