#!/bin/sh
# What a CUDA GPU checks and measures, in one run of at most SECONDS (default 540), from the
# repository's root with the python3 that holds jax (CUDA), flax, equinox and torch:
#
#     sh benchmarks/gpu_checks.sh OUTDIR [SECONDS]
#
# 0. the GPU, its driver and the versions of the frameworks;
# 1. tests/test_cudnn.py on cuDNN itself (on a CPU it runs JAX's reference of cuDNN's call);
# 2. the suite (python -m benchmarks), one run per configuration, most wanted first: c1, c3, bi,
#    cl, c2. Each checks every implementation against PyTorch in float64, then times it against
#    PyTorch's cuDNN nn.LSTM and nn.GRU and jax.experimental.rnn. A run per configuration, each
#    with its own time limit, so that one cut short loses only itself; the runs that finished
#    are merged into one report (python -m benchmarks --merge);
# 3. the scan's options on this GPU (python -m benchmarks.scan_options --quick), which set
#    jaxrnn.kernels' _PLAIN_LOOP and _SCAN_UNROLL.
# Each step has a limit of its own, cut to what is left of SECONDS, and a step with less than
# 20 s left is skipped, so that a stuck one leaves the others their time and the whole run ends
# in time to merge and pack what it measured.
#
# OUTDIR gets four files: gpu_checks.log (everything printed), suite_gpu.md and suite_gpu.json
# (the merged report) and gpu_checks.tar.gz (those, the charts, each run's own files and the
# scan's options).
set -u
out=${1:?usage: sh benchmarks/gpu_checks.sh OUTDIR [SECONDS]}
budget=${2:-540}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
log="$out/gpu_checks.log"
: >"$log"
start=$(date +%s)
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1

# step LIMIT COMMAND...: COMMAND under `timeout`, for LIMIT seconds or what is left of the budget
# less 30 s kept for the merge, whichever is less; its output, exit status and seconds into the
# log, on lines that begin with ">>".
step() {
    limit=$1
    shift
    left=$((budget - 30 - ($(date +%s) - start)))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 20 ]; then
        echo ">> skipped, ${left} s left: $*" | tee -a "$log"
        return
    fi
    echo ">> $* (limit ${limit} s)" | tee -a "$log"
    begin=$(date +%s)
    (
        timeout -k 5 "$limit" "$@"
        echo ">> exit status $? after $(($(date +%s) - begin)) s"
    ) 2>&1 | tee -a "$log"
}

step 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
step 30 python3 -c "$(cat <<'PY'
import importlib.metadata as meta
import jax, torch
from jaxrnn import _cudnn
print({p: meta.version(p) for p in ("jax", "jaxlib", "flax", "equinox", "torch")})
print(jax.devices(), "cuDNN LSTM for jaxrnn:", _cudnn.available())
cuda = torch.cuda.is_available()
print("torch:", torch.cuda.get_device_name(0) if cuda else "no CUDA", "cuDNN", torch.backends.cudnn.version())
PY
)"
step 90 python3 -m pytest tests/test_cudnn.py -q -p no:cacheprovider
for config in c1 c3 bi cl c2; do
    step 180 python3 -m benchmarks --configs "$config" --out "$work/runs/$config"
done
step 60 python3 -m benchmarks.scan_options --quick --out "$work/scan_options"

runs=$(ls "$work"/runs/*/suite_*.json 2>/dev/null)
if [ -n "$runs" ]; then
    # shellcheck disable=SC2086  # one path per word: mktemp's names have no spaces
    timeout 25 python3 -m benchmarks --merge $runs --out "$work/merged" 2>&1 | tee -a "$log"
    cp "$work"/merged/suite_*.md "$work"/merged/suite_*.json "$out"/ 2>/dev/null
else
    echo ">> no run of the suite finished" | tee -a "$log"
fi
cp "$log" "$work/"
tar -czf "$out/gpu_checks.tar.gz" -C "$work" .
echo ">> $(($(date +%s) - start)) s in all; files in $out: $(ls "$out" | tr '\n' ' ')" | tee -a "$log"
rm -rf "$work"
