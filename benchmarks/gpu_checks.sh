#!/bin/sh
# What a CUDA GPU checks and measures, in one run of under 10 minutes, from the repository's root
# with the python3 that holds jax (CUDA), flax, equinox and torch:
#
#     sh benchmarks/gpu_checks.sh OUTDIR
#
# 1. tests/test_cudnn.py on cuDNN itself (on a CPU it runs JAX's reference of cuDNN's call);
# 2. the suite at c1, then at c3 (python -m benchmarks): every implementation checked against
#    PyTorch in float64, then timed against PyTorch's cuDNN nn.LSTM and nn.GRU and
#    jax.experimental.rnn; suite_gpu.{md,json} and suite_gpu_<config>.png into OUTDIR/c1 and
#    OUTDIR/c3 (two runs, so that one cut short by its limit leaves the other's files);
# 3. the scan's options on this GPU (python -m benchmarks.scan_options --quick), which set
#    jaxrnn.kernels' _PLAIN_LOOP and _SCAN_UNROLL.
# Each step has its own time limit, so that a stuck one leaves the others their time.
set -u
out=${1:?usage: sh benchmarks/gpu_checks.sh OUTDIR}
mkdir -p "$out"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
python3 -c "import jax; from jaxrnn import _cudnn; print(jax.__version__, jax.devices(), _cudnn.available())" \
    2>&1 | tee "$out/gpu_checks.log"
timeout 90 python3 -m pytest tests/test_cudnn.py -q -p no:cacheprovider 2>&1 \
    | tee -a "$out/gpu_checks.log"
timeout 180 python3 -m benchmarks --configs c1 --out "$out/c1" 2>&1 | tee -a "$out/gpu_checks.log"
timeout 240 python3 -m benchmarks --configs c3 --out "$out/c3" 2>&1 | tee -a "$out/gpu_checks.log"
timeout 60 python3 -m benchmarks.scan_options --quick --out "$out" 2>&1 \
    | tee -a "$out/gpu_checks.log"
