#!/usr/bin/env bash
# One pass of every check that needs a GPU, in about 9 minutes, logs in OUTDIR:
#   1. CUDA correctness: fast vs reference steps on CUDA, CUDA vs CPU step, CUDA vs CPU batches
#   2. the speed figures of benchmarks/RESULTS.md on CUDA (compile excluded)
#   3. the end-to-end tests (the real exp_scripts) with --gpu auto
#   4. the --compile path's speed, NAS-Bench-201 only (compiling is slow)
#
#   bash benchmarks/device_check.sh [OUTDIR]      (default: $OUT, else /tmp/device_check)
#
# Missing packages (gpustat, nas-bench-201 and their pure-Python needs) can sit as wheels
# in .whl/ at the repository root; they are installed into /tmp/site first. Each step has
# its own time limit, so a slow one leaves time for the next; its log ends with its status.
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/device_check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}

if ls .whl/*.whl >/dev/null 2>&1; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $out/NAME.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee "$out/$name.txt"
    local t0=$SECONDS
    timeout "$limit" "$@" >>"$out/$name.txt" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$out/$name.txt"
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; } >"$out/env.txt" 2>&1
cat "$out/env.txt"

step tests_cuda 150 $py -m pytest -q -rs -p no:cacheprovider tests/test_fast_path.py tests/test_data.py \
    tests/test_infrastructure.py
step bench_cuda 200 $py -m benchmarks.bench_search --device cuda --variants fast,fast_cl,tf32,amp,reference \
    --eval_variants fast,fast_cl,tf32,reference
step e2e_cuda 120 env DARTS_PT_TEST_GPU=auto $py -m pytest -q -rs -x -p no:cacheprovider tests/test_nb201_e2e.py \
    tests/test_sota_e2e.py tests/test_eval.py
step bench_compile 60 $py -m benchmarks.bench_search --device cuda --spaces nb201 --no_eval \
    --variants fast,compile,reference
