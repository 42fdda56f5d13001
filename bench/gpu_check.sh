#!/usr/bin/env bash
# Unit tests and the SUMO training benchmark on a GPU machine, with the python on PATH.
# Installs nothing. Run from the repository root:  OUT=/some/dir bash bench/gpu_check.sh
set -u
OUT="${OUT:-.}"
mkdir -p "$OUT"
echo "== devices"; nvidia-smi -L || echo "nvidia-smi not available"
python -c "import jax; print('jax', jax.__version__, jax.devices())" || exit 1
echo "== unit tests"
python -m pytest tests -q -p no:cacheprovider 2>&1 | tail -25 | tee "$OUT/pytest_gpu.txt"
echo "== benchmark"
python bench/sumo_training.py --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.txt"
