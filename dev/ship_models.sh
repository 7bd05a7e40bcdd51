#!/usr/bin/env bash
# How the shipped models in models/ are made, start to end (about 2 hours on 2 CPU cores; each step
# resumes or is skipped when its result exists). The model cards hold the numbers these commands printed.
#   bash dev/ship_models.sh [OUT]      (default OUT: output/ship)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-output/ship}
DETECTOR_CFG=configs/SegPC/rmask_rcnn_lite2_fpn_d80.yaml
DETECTOR_RUN=$OUT/detector
mkdir -p "$OUT"

# 1. Detector: every training frame of both microscopes, periodic evaluation on the three val sets.
[ -f "$DETECTOR_RUN/model_final.pth" ] || $PY tools/train_net.py --config-file $DETECTOR_CFG --resume OUTPUT_DIR "$DETECTOR_RUN"
$PY tools/plot_training.py "$DETECTOR_RUN" --output "$OUT/detector_training_curve.png"
$PY tools/export_weights.py --input "$DETECTOR_RUN/model_final.pth" --output "$OUT/model_fp16.pth" --dtype float16
# float16 storage against the float32 checkpoint, same evaluation; the reduced val split also per microscope
EVAL_SETS="('segpc_mini_val','segpc_nikon_val','segpc_lowres_val','segpc_lowres_val_olympus','segpc_lowres_val_nikon')"
for weights in "$DETECTOR_RUN/model_final.pth" "$OUT/model_fp16.pth"; do
  name=$(basename "$weights" .pth)
  [ -f "$OUT/eval_$name/inference/evaluation.json" ] ||
    $PY tools/train_net.py --config-file $DETECTOR_CFG --eval-only MODEL.WEIGHTS "$weights" \
      DATASETS.TEST "$EVAL_SETS" OUTPUT_DIR "$OUT/eval_$name"
done

# 2. Classifier crops, physical scale (2 median cell diameters), negatives from the stain heuristic and
#    from the detector. Training folder: the reduced training frames, 15% of them held out for model
#    selection. Evaluation folders: images no model saw, each cut beside the training frames of its scale.
CROPS="--size 128 --crop-diameters 2 --detector-config $DETECTOR_CFG --detector-weights $OUT/model_fp16.pth"
build() {  # name, then build_crops arguments
  local name=$1; shift
  [ -f "$OUT/crops_$name/balance.json" ] || $PY tools/build_crops.py "$@" --output "$OUT/crops_$name" $CROPS
}
build train --dataset segpc_lowres_train_fit --val-fraction 0.15
build lowres_val --dataset segpc_lowres_train_fit --val-dataset segpc_lowres_val
build mini_val --dataset segpc_mini_train --val-dataset segpc_mini_val
build nikon_val --dataset segpc_nikon_fit --val-dataset segpc_nikon_val

# 3. Classifier training, then its report on each unseen set.
[ -f "$OUT/classifier/metrics.json" ] ||
  $PY tools/train_classifier.py --config-file configs/Classifier/lite2_segpc.yaml --crops "$OUT/crops_train" \
    --output "$OUT/classifier"
for name in lowres_val mini_val nikon_val; do
  $PY tools/evaluate_classifier.py --weights "$OUT/classifier/model_best.pth" --crops "$OUT/crops_$name" \
    --output "$OUT/classifier_eval/$name"
done

# 4. For the side-by-side table: the earlier model, the README's command on the sample's 10 training
#    images (shortest-edge resize), evaluated on the same sets.
BASELINE=$OUT/baseline_10_images
[ -f "$BASELINE/model_final.pth" ] ||
  $PY tools/train_net.py --config-file configs/SegPC/rmask_rcnn_lite2_fpn.yaml --resume \
    SOLVER.MAX_ITER 400 SOLVER.STEPS '(300,)' SOLVER.WARMUP_ITERS 50 OUTPUT_DIR "$BASELINE"
[ -f "$BASELINE/eval/inference/evaluation.json" ] ||
  $PY tools/train_net.py --config-file configs/SegPC/rmask_rcnn_lite2_fpn.yaml --eval-only \
    MODEL.WEIGHTS "$BASELINE/model_final.pth" DATASETS.TEST "$EVAL_SETS" OUTPUT_DIR "$BASELINE/eval"
