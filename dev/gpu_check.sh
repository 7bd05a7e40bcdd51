#!/usr/bin/env bash
# The CUDA checks and GPU timings as one script for the lent GPU machine (../shared/gpu/README.md: no package
# registry there, so no `make setup`; carry `.whl`, written by `bash ../shared/gpu/wheels.sh`):
#   1. the tests marked `cuda`;
#   2. the shipped model evaluated on CUDA and on the CPU, checked to agree (dev/cuda_vs_cpu.py);
#   3. the benchmark sections end-to-end (tools per full-size frame) and large-images (seconds per MP).
# Everything lands in $OUT; copy RESULTS_cuda.md's tables into benchmarks/RESULTS.md with the GPU's name.
#   device run:  OUT=$OUT bash dev/gpu_check.sh      carry: .whl
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-output/gpu_check}
mkdir -p "$OUT"
# shellcheck disable=SC1091
source .whl/device_env.sh
PY=python3
step() { echo "=== $* ($(date -u +%H:%M:%S))"; }

step gpu;        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
step cuda-tests; $PY -m pytest -q -m cuda -rs tests 2>&1 | tail -15 | tee "$OUT/cuda_tests.txt"
step agree;      $PY dev/cuda_vs_cpu.py --config-file configs/SegPC/rmask_rcnn_lite2_fpn_d80_point_nucleus.yaml \
                     --weights segpc-rmask-lite2-nucleus --output "$OUT/cuda_vs_cpu.json" \
                     DATASETS.TEST "('segpc_mini_val',)" 2>&1 | tail -1 | tee "$OUT/agree.txt"
step bench;      $PY -m benchmarks.benchmark --sections end-to-end large-images --output "$OUT/RESULTS_cuda.md" \
                     2>&1 | tail -3
step done
