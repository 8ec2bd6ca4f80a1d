#!/usr/bin/env bash
# Spread one lpc-bench sweep over a SLURM job array on a shared filesystem.
#
# Each array task runs one of N disjoint, deterministic shards of the grid
# (`--shard I/N`, 0-based: task I gets cells I, I+N, I+2N, ... of the expansion order).
# Finished cells hold a DONE marker and are skipped on reruns, so a failed or pre-empted
# array can simply be submitted again. When every task has succeeded, `lpc-bench report OUT`
# merges what all shards wrote (OUT/all-metrics.csv) and writes the report.
#
# Submit the array and the dependent report job in one go (run on the login node):
#
#     SCENARIO=scenarios/paper/objectives-distance.toml OUT=results/objectives-distance \
#         scripts/slurm-sweep.sh submit 8
#
# or by hand:
#
#     export SCENARIO=scenarios/paper/objectives-distance.toml OUT=results/objectives-distance
#     jid=$(sbatch --parsable --array=0-7 --export=ALL scripts/slurm-sweep.sh)
#     sbatch --dependency=afterok:"$jid" --export=ALL --job-name=lpc-report \
#         --wrap='lpc-bench report "$OUT"'
#
# `afterok` on an array job waits for every task and runs only if all succeeded; after a
# partial failure, resubmit the same array (finished cells are skipped), or use
# `--dependency=afterany:$jid` to report on whatever finished.
#
# Environment:
#   SCENARIO   scenario file with a [sweep] table (required)
#   OUT        output folder on the shared filesystem (required)
#   LPC_BENCH  the binary to run (default: lpc-bench on PATH)
#   EXTRA_ARGS more arguments for `lpc-bench sweep`, e.g. "--threads-per-cell 4" (default: none)
#
# The array must be contiguous with step 1 (`--array=0-(N-1)`, a `%K` throttle is fine):
# the shard count is SLURM_ARRAY_TASK_COUNT and the shard index is the task id minus
# SLURM_ARRAY_TASK_MIN. `lpc-bench sweep FILE --dry-run` lists the cells and their cost, to
# choose N and --time. `--jobs 1` runs one cell at a time per task; give each task the
# cores one cell uses with --cpus-per-task.
#
#SBATCH --job-name=lpc-sweep
#SBATCH --array=0-7
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=12:00:00
#SBATCH --output=slurm-%x-%A_%a.out

set -euo pipefail

: "${SCENARIO:?set SCENARIO to the scenario file}"
: "${OUT:?set OUT to the output folder (on a shared filesystem)}"
LPC_BENCH="${LPC_BENCH:-lpc-bench}"
read -r -a extra <<< "${EXTRA_ARGS:-}"

if [[ "${1:-}" == "submit" ]]; then
    n="${2:?usage: scripts/slurm-sweep.sh submit N   (N = number of array tasks)}"
    if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
        echo "slurm-sweep.sh: N must be a positive integer, got '$n'" >&2
        exit 2
    fi
    # Fail early, on the login node, if the grid does not expand.
    "$LPC_BENCH" sweep "$SCENARIO" --dry-run > /dev/null
    jid=$(sbatch --parsable --array="0-$((n - 1))" --export=ALL "$0")
    jid="${jid%%;*}"
    printf -v report_cmd '%q report %q' "$LPC_BENCH" "$OUT"
    rid=$(sbatch --parsable --dependency="afterok:${jid}" --export=ALL \
        --job-name=lpc-report --output="slurm-lpc-report-%j.out" --wrap="$report_cmd")
    rid="${rid%%;*}"
    echo "sweep array: job ${jid} (${n} tasks); report: job ${rid} (runs after all tasks succeed)"
    exit 0
fi

if [[ -z "${SLURM_ARRAY_TASK_ID:-}" || -z "${SLURM_ARRAY_TASK_COUNT:-}" ]]; then
    echo "slurm-sweep.sh: not inside a SLURM array task; submit with" >&2
    echo "    sbatch --array=0-(N-1) --export=ALL $0    or    $0 submit N" >&2
    exit 2
fi

min="${SLURM_ARRAY_TASK_MIN:-0}"
max="${SLURM_ARRAY_TASK_MAX:-$((SLURM_ARRAY_TASK_COUNT - 1))}"
count="$SLURM_ARRAY_TASK_COUNT"
if (( max - min + 1 != count )); then
    echo "slurm-sweep.sh: the array must be contiguous (--array=0-(N-1)); got ids ${min}..${max}" \
        "with ${count} tasks" >&2
    exit 2
fi
index=$((SLURM_ARRAY_TASK_ID - min))

echo "lpc-bench sweep ${SCENARIO}: shard ${index}/${count} on $(hostname) into ${OUT}"
exec "$LPC_BENCH" sweep "$SCENARIO" --out "$OUT" --shard "${index}/${count}" --jobs 1 ${extra[@]+"${extra[@]}"}
