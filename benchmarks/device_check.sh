#!/usr/bin/env bash
# One pass of every check that needs a GPU, in under 10 minutes (one device call; the limits add up to 565 s), logs in OUTDIR:
#   1. CUDA correctness: fast vs reference steps on CUDA, CUDA vs CPU step, CUDA vs CPU batches,
#      the cells' shared steps and running sums (tests/test_cellops.py) on CUDA
#   2. the per-step speed figures of benchmarks/RESULTS.md on CUDA, bf16 autocast (amp) included
#   3. the whole-pipeline benchmark on CUDA (NAS-Bench-201) and the projected 100-epoch pipeline
#   4. the end-to-end tests (the real exp_scripts) with --gpu auto
#   5. projection cost per criterion (zero-cost proxies) and their rank agreement with acc
#   6. --compile, default mode and with CUDA graphs (reduce-overhead), on both supernets
#   7. ImageNet: the loader's images/s at 8 and 16 workers, the network's training step (fp32, bf16)
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

step tests_cuda 90 $py -m pytest -q -rs -p no:cacheprovider -k cuda tests/test_fast_path.py \
    tests/test_cellops.py tests/test_data.py tests/test_infrastructure.py
step bench_cuda 90 $py -m benchmarks.bench_search --device cuda --variants fast,fast_cl,tf32,amp,reference \
    --eval_variants fast,tf32,reference
step pipeline_cuda 100 $py -m benchmarks.bench_pipeline --device cuda --spaces nb201 --project_full
step e2e_cuda 80 env DARTS_PT_TEST_GPU=auto $py -m pytest -q -rs -x -p no:cacheprovider tests/test_nb201_e2e.py \
    tests/test_sota_e2e.py tests/test_eval.py
step projection_cuda 45 $py -m benchmarks.bench_projection --device cuda --init_channels 16 --num_cells 5 \
    --train_images 4096 --epochs 3 --proj_batches 1,4
step compile_nb201 45 $py -m benchmarks.bench_search --device cuda --spaces nb201 --no_eval \
    --variants fast,compile,compile_cg,reference
step compile_darts 45 $py -m benchmarks.bench_search --device cuda --spaces darts --no_eval --steps 3 \
    --variants fast,compile,compile_cg
step bench_imagenet 70 $py -m benchmarks.bench_imagenet --device cuda --workers 8,16 --batch_size 128 \
    --loader_batches 30 --steps 5
