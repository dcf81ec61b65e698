# Sourced by every exp_scripts/*.sh: run a module of this repository with the script's
# defaults first and the user's `--name value` pairs after them (argparse keeps the last
# value, so anything the user passes overrides a default). Works from any directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

run() {
    local module=$1
    shift
    # `python -m study` asks a script what it would run (module, then its arguments) to name its
    # folders exactly as the run will; NUL-separated, nothing is run.
    if [[ -n ${DARTS_PT_PRINT_COMMAND:-} ]]; then
        printf '%s\0' "$module" "$@"
        exit 0
    fi
    echo "[$(basename "$0")] $PYTHON -m $module $*"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m "$module" "$@"
}

# `run` for a module that trains under torchrun: the script's own flag `--nproc N` (default 1;
# not passed to the module) starts N processes on this machine, through common/launch.py
# (torchrun --standalone --nproc_per_node N -m MODULE ...).
run_distributed() {
    local module=$1 nproc=1 args=()
    shift
    while (($#)); do
        case $1 in
            --nproc) nproc=${2-}; shift $(($# > 1 ? 2 : 1)) ;;
            --nproc=*) nproc=${1#--nproc=}; shift ;;
            *) args+=("$1"); shift ;;
        esac
    done
    if [[ ! $nproc =~ ^[1-9][0-9]*$ ]]; then
        echo "error: --nproc ${nproc:-(no value)}: must be a whole number of processes, at least 1" >&2
        exit 2
    fi
    if ((nproc == 1)) || [[ -n ${DARTS_PT_PRINT_COMMAND:-} ]]; then
        run "$module" "${args[@]}"
    fi
    echo "[$(basename "$0")] $PYTHON -m common.launch --nproc_per_node $nproc -m $module ${args[*]}"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
        exec "$PYTHON" -m common.launch --nproc_per_node "$nproc" -m "$module" "${args[@]}"
}

# True if the user's arguments name the given flag (e.g. has_flag --space "$@").
has_flag() {
    local flag=$1
    shift
    for a in "$@"; do [[ $a == "$flag" || $a == "$flag="* ]] && return 0; done
    return 1
}
