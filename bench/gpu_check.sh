#!/usr/bin/env bash
# The one prepared GPU check: benchmarks 1 and 2 on CUDA (ResNet-50, bf16, channels-last,
# 4 spawned DataLoader workers), engine vs plain PyTorch loops. Exits 0 with a message where
# there is no CUDA. Output goes to the terminal and, when $OUT is set, to $OUT/bench_cuda.txt
# and $OUT/bench_cuda.json. Extra arguments go to bench_cuda.py (e.g. --quick).
set -uo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; print('torch', torch.__version__, 'cuda available:', torch.cuda.is_available()); sys.exit(0)"
if [ -n "${OUT:-}" ]; then
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
    python bench/bench_cuda.py --cuda "$@" 2>&1 | tee "$OUT/bench_cuda.txt"
else
    python bench/bench_cuda.py --cuda "$@"
fi
