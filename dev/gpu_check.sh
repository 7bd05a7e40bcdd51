#!/usr/bin/env bash
# The CUDA checks, as one script for a lent GPU machine (the `device` tool's run: OUT is its output folder):
#   1. set-up and the tests marked `cuda`;  2. the shipped SegPC config trained 300 iterations on CUDA and
#   evaluated there (COCOEvaluator + SegPC scorer);  3. the same weights evaluated on CUDA and on the CPU,
#   checked to agree within half-precision noise;  4. training and inference timings on that GPU.
# Everything it prints and writes lands in $OUT; put the GPU name and RESULTS_cuda.md's numbers into
# benchmarks/RESULTS.md afterwards.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-output/gpu_check}
mkdir -p "$OUT"
PY=.venv/bin/python
step() { echo "=== $* ($(date -u +%H:%M:%S))"; }

step setup;      make setup 2>&1 | tail -3
step gpu;        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
step cuda-tests; $PY -m pytest -q -m cuda -rs tests 2>&1 | tail -15 | tee "$OUT/cuda_tests.txt"
step train;      $PY tools/train_net.py --config-file configs/SegPC/rmask_rcnn_lite2_fpn.yaml MODEL.DEVICE cuda \
                     SOLVER.MAX_ITER 300 SOLVER.STEPS '(240,)' SOLVER.WARMUP_ITERS 50 \
                     OUTPUT_DIR "$OUT/segpc_cuda" 2>&1 | grep -a "Precision\|Overall training\|copypaste" \
                     | tee "$OUT/train.txt"
step agree;      $PY dev/cuda_vs_cpu.py --config-file configs/SegPC/rmask_rcnn_lite2_fpn.yaml \
                     --weights "$OUT/segpc_cuda/model_final.pth" --output "$OUT/cuda_vs_cpu.json" 2>&1 | tail -1 \
                     | tee "$OUT/agree.txt"
step bench;      $PY -m benchmarks.benchmark --sections inference training --output "$OUT/RESULTS_cuda.md" 2>&1 | tail -2
rm -f "$OUT/segpc_cuda/model_"*.pth   # checkpoints are too large to bring back
step done
