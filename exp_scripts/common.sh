# Sourced by every exp_scripts/*.sh: run a module of this repository with the script's
# defaults first and the user's `--name value` pairs after them (argparse keeps the last
# value, so anything the user passes overrides a default). Works from any directory.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
# The command as the user typed it, for the commands a run prints (common/commands.py): a script
# that another one execs (blank-proj-201.sh given --space) keeps the one typed, whose process it is.
if [[ ${DARTS_PT_COMMAND_PID:-} != "$$" ]]; then
    DARTS_PT_COMMAND=$(printf '%s\x1f' bash "$0" "$@")
    export DARTS_PT_COMMAND DARTS_PT_COMMAND_PID=$$
fi

# The arguments as one line, each flag once with the value in force (argparse keeps the last);
# what the module gets is left as it is.
shown() {
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m common.commands "$@" 2>/dev/null || echo "$*"
}

run() {
    local module=$1
    shift
    # `python -m study` asks a script what it would run (module, then its arguments) to name its
    # folders exactly as the run will; NUL-separated, nothing is run.
    if [[ -n ${DARTS_PT_PRINT_COMMAND:-} ]]; then
        printf '%s\0' "$module" "$@"
        exit 0
    fi
    echo "[$(basename "$0")] $PYTHON -m $module $(shown "$@")"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m "$module" "$@"
}

# `run` for a module that trains under torchrun. The script's own flags (not passed to the
# module): `--nproc G` (default 1) starts G processes on this machine, through common/launch.py
# (torchrun --standalone --nproc_per_node G -m MODULE ...); `--nnodes N --rdzv_endpoint HOST:PORT`
# runs on N machines, the same command on each (G processes on every one), which meet through
# torchrun's c10d rendezvous at HOST:PORT (HOST: one of the machines); `--node_rank R` says which
# machine hosts the rendezvous (R 0; needed only when the machines share a host name, as in tests)
# and `--rdzv_id ID` names the job (e.g. $SLURM_JOB_ID), so that two jobs on one endpoint do not meet.
run_distributed() {
    local module=$1 nproc=1 nnodes=1 node_rank="" endpoint="" rdzv_id="" args=() value
    shift
    while (($#)); do
        case $1 in
            --nproc | --nnodes | --node_rank | --rdzv_endpoint | --rdzv_id)
                value=${2-}
                case $1 in
                    --nproc) nproc=$value ;; --nnodes) nnodes=$value ;; --node_rank) node_rank=$value ;;
                    --rdzv_endpoint) endpoint=$value ;; --rdzv_id) rdzv_id=$value ;;
                esac
                shift $(($# > 1 ? 2 : 1)) ;;
            --nproc=*) nproc=${1#--nproc=}; shift ;;
            --nnodes=*) nnodes=${1#--nnodes=}; shift ;;
            --node_rank=*) node_rank=${1#--node_rank=}; shift ;;
            --rdzv_endpoint=*) endpoint=${1#--rdzv_endpoint=}; shift ;;
            --rdzv_id=*) rdzv_id=${1#--rdzv_id=}; shift ;;
            *) args+=("$1"); shift ;;
        esac
    done
    if [[ ! $nproc =~ ^[1-9][0-9]*$ ]]; then
        echo "error: --nproc ${nproc:-(no value)}: must be a whole number of processes, at least 1" >&2
        exit 2
    fi
    if [[ ! $nnodes =~ ^[1-9][0-9]*$ ]]; then
        echo "error: --nnodes ${nnodes:-(no value)}: must be a whole number of machines, at least 1" >&2
        exit 2
    fi
    if ((nnodes > 1)) && [[ ! $endpoint =~ ^[^:]+:[0-9]+$ ]]; then
        echo "error: --rdzv_endpoint ${endpoint:-(none)}: --nnodes $nnodes needs HOST:PORT, a machine of the" \
             "job and a free port on it, where the machines meet (e.g. --rdzv_endpoint node1:29500)" >&2
        exit 2
    fi
    if [[ -n $node_rank ]] && { [[ ! $node_rank =~ ^[0-9]+$ ]] || ((node_rank >= nnodes)); }; then
        echo "error: --node_rank $node_rank: must be a whole number below --nnodes $nnodes" >&2
        exit 2
    fi
    if ((nproc == 1 && nnodes == 1)) || [[ -n ${DARTS_PT_PRINT_COMMAND:-} ]]; then
        run "$module" "${args[@]}"
    fi
    local launch=(--nproc_per_node "$nproc")
    if ((nnodes > 1)); then
        launch+=(--nnodes "$nnodes" --rdzv_endpoint "$endpoint")
        [[ -n $node_rank ]] && launch+=(--node_rank "$node_rank")
        [[ -n $rdzv_id ]] && launch+=(--rdzv_id "$rdzv_id")
    fi
    echo "[$(basename "$0")] $PYTHON -m common.launch ${launch[*]} -m $module $(shown "${args[@]}")"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
        exec "$PYTHON" -m common.launch "${launch[@]}" -m "$module" "${args[@]}"
}

# True if the user's arguments name the given flag (e.g. has_flag --space "$@").
has_flag() {
    local flag=$1
    shift
    for a in "$@"; do [[ $a == "$flag" || $a == "$flag="* ]] && return 0; done
    return 1
}
