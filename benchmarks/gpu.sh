#!/usr/bin/env bash
# GPU readiness, in one run on a machine with NVIDIA GPUs (nothing here has run on one yet):
#   1. the `gpu` tests (dask-cuda workers, the model on CUDA, GPU vs CPU predictions);
#   2. the kernel benchmark on CUDA in fp32 and bf16, and bf16 against fp32 (precision.py);
#   3. the end-to-end benchmark on a local dask-cuda cluster (one worker per GPU, bf16, pinned
#      host memory and host-to-device copies overlapped with the previous block's forward
#      pass), fed the measured bf16 kernel rate for the continental projection.
# Results go to ${OUT:-benchmarks/results/gpu}/ (JSON + the printed tables in gpu.log).
#
# Usage: bash benchmarks/gpu.sh            (after `pip install -c constraints.txt -e ".[gpu,dev]"`
#                                           with a CUDA build of torch, see README)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
python=${PYTHON:-.venv/bin/python}
exec > >(tee "$out/gpu.log") 2>&1

nvidia-smi
"$python" -c "import torch; assert torch.cuda.is_available(), 'torch has no CUDA: install its CUDA build'; print(torch.__version__, torch.cuda.get_device_name(0))"

echo "== gpu tests"
"$python" -m pytest -q -p no:cacheprovider -m gpu tests/ || echo "gpu tests FAILED (see above)"

echo "== kernel, fp32 and bf16"
"$python" benchmarks/model_kernel.py --device cuda --dtype fp32 --out "$out/model_kernel_fp32.json"
"$python" benchmarks/model_kernel.py --device cuda --dtype bf16 --out "$out/model_kernel_bf16.json"
"$python" benchmarks/precision.py --device cuda --precision bf16 --out "$out/precision_bf16.json"

# The bf16 kernel rate at 64 dates feeds the continental projection.
rate=$("$python" -c "
import json; rows = json.load(open('$out/model_kernel_bf16.json'))['rows']
print(max(rows, key=lambda r: r['dates'] == 64)['flop_per_s'])")

echo "== end to end on dask-cuda (bf16), projection at ${rate} FLOP/s"
"$python" benchmarks/end_to_end.py --cluster cuda --gpu-flop-rate "$rate" \
    --out "$out/end_to_end.json" --data-dir "$out/end_to_end"
