#!/usr/bin/env bash
# gpu-check.sh: the prepared GPU check of issue 7, for a machine with an NVIDIA GPU and CUDA.
#
#   scripts/gpu-check.sh            # from anywhere; results under target/gpu-check/
#
# Steps, each under a time bound, the whole under GPU_CHECK_BUDGET seconds (default 470, i.e.
# under 8 minutes; a step that no longer fits is skipped and reported as such):
#   1. build lpc-bench and the train-step and matmul benches with --features cuda;
#   2. run scenarios/smoke.toml on the CPU and scenarios/gpu/smoke.toml on the GPU, and check
#      that every held-out loss (curves.csv, eval_loss) agrees to TOL_F32 relative (1e-3): both
#      runs start from the same host-drawn weights, so only floating-point order differs;
#   3. run the train-step bench on the GPU (f32 at d_model 64, 256, 512; bf16 at 512; the
#      device is synchronised before every clock read) and, for the speed-up, on this machine's
#      CPU at d_model 512; and the GPU matmul bench (the peak the FLOP fractions divide by);
#   4. run scenarios/gpu/smoke-bf16.toml and compare it with the f32 GPU run (TOL_BF16, 2e-2
#      relative: bf16 rounds every matmul operand to 8 bits of mantissa);
#   5. run one GPU-sized scenario, scenarios/gpu/two-opposed-check.toml (d_model 512, 6 layers,
#      129 tokens, 100k pairs, 300 steps, 2 methods) with what is left of the budget;
#   6. print the bench tables and a short summary table last.
#
# Needs: cargo with the crates available (network, or a `cargo vendor` directory configured in
# .cargo/config.toml), the NVIDIA driver (CUDA libraries are loaded at run time; no nvcc needed).
# Exit status: 0 when every check that ran passed, 1 otherwise.

set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-target/gpu-check}
BUDGET=${GPU_CHECK_BUDGET:-470}
TOL_F32=${TOL_F32:-1e-3}
TOL_BF16=${TOL_BF16:-2e-2}
BIN=target/release/lpc-bench
START=$(date +%s)
FAILED=0
ROWS=()

mkdir -p "$OUT"
log() { echo "[gpu-check +$(($(date +%s) - START))s] $*" >&2; }
row() { ROWS+=("| $1 | $2 | $3 |"); }

# Seconds a step may take: its own bound, cut to what is left of the budget (minus 10 s for the
# table). Prints 0 when the step no longer fits.
bound() {
    local left=$((BUDGET - ($(date +%s) - START) - 10))
    if ((left < 15)); then echo 0; elif ((left < $1)); then echo "$left"; else echo "$1"; fi
}

# run_step NAME MAX_SECONDS COMMAND...: run under `timeout`, log to $OUT/NAME.log.
run_step() {
    local name=$1 max=$2
    shift 2
    local t
    t=$(bound "$max")
    if ((t == 0)); then
        log "$name: skipped (time budget spent)"
        return 125
    fi
    log "$name: $* (bound ${t}s)"
    local t0=$(date +%s) rc
    timeout --kill-after=10 "$t" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    log "$name: exit $rc after $(($(date +%s) - t0))s"
    return $rc
}

status_of() {
    case $1 in
        0) echo ok ;;
        124 | 137) echo "timed out" ;;
        125) echo "skipped (time)" ;;
        *) echo "failed (exit $1, see $OUT/$2.log)" ;;
    esac
}

# compare_losses A.csv B.csv TOL: max relative difference of eval_loss over rows matched by
# (method, step); prints "MAXREL ROWS" or "MISSING".
compare_losses() {
    awk -F, -v tol="$3" '
        FNR == 1 { for (i = 1; i <= NF; i++) if ($i == "eval_loss") col[FILENAME] = i; next }
        FILENAME == ARGV[1] { a[$1 "/" $2] = $col[FILENAME]; next }
        ($1 "/" $2) in a {
            x = a[$1 "/" $2] + 0; y = $col[FILENAME] + 0
            d = x - y; if (d < 0) d = -d
            s = (y < 0 ? -y : y); if (s < 1e-12) s = 1e-12
            if (d / s > m) m = d / s
            n++
        }
        END { if (n == 0) print "MISSING"; else printf "%.3g %d\n", m, n }
    ' "$1" "$2"
}

# check_pair LABEL CSV_A CSV_B TOL
check_pair() {
    local res
    if [[ ! -f $2 || ! -f $3 ]]; then
        row "$1" "not run" "missing curves.csv"
        FAILED=1
        return
    fi
    res=$(compare_losses "$2" "$3" "$4")
    if [[ $res == MISSING ]]; then
        row "$1" "FAIL" "no common (method, step) rows"
        FAILED=1
        return
    fi
    local maxrel=${res% *} n=${res#* }
    if awk -v m="$maxrel" -v t="$4" 'BEGIN { exit !(m <= t) }'; then
        row "$1" "PASS" "max relative eval_loss difference $maxrel over $n points (tolerance $4)"
    else
        row "$1" "FAIL" "max relative eval_loss difference $maxrel over $n points (tolerance $4)"
        FAILED=1
    fi
}

if command -v nvidia-smi >/dev/null; then
    log "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
else
    log "nvidia-smi not found; the CUDA runs will report whether a GPU can be used"
fi

# 1. Build.
run_step build 300 cargo build --release --features cuda --bin lpc-bench
rc=$?
row "build (--features cuda)" "$(status_of $rc build)" "cargo build --release --features cuda"
if ((rc != 0)); then
    FAILED=1
else
    run_step build-benches 120 cargo bench --features cuda --no-run --bench train_step --bench matmul
    rc=$?
    row "build benches" "$(status_of $rc build-benches)" "train_step, matmul"
    ((rc == 0)) || FAILED=1
fi

# 2. Smoke on both devices.
rc_gpu=1
if [[ -x $BIN ]]; then
    run_step smoke-cpu 60 "$BIN" run scenarios/smoke.toml --out "$OUT/smoke-cpu" --force -q
    rc_cpu=$?
    run_step smoke-gpu 120 "$BIN" run scenarios/gpu/smoke.toml --out "$OUT/smoke-gpu" --force -q
    rc_gpu=$?
    if ((rc_cpu == 0 && rc_gpu == 0)); then
        check_pair "smoke: GPU f32 vs CPU" "$OUT/smoke-cpu/curves.csv" "$OUT/smoke-gpu/curves.csv" "$TOL_F32"
    else
        row "smoke: GPU f32 vs CPU" "$(status_of $((rc_gpu ? rc_gpu : rc_cpu)) smoke-gpu)" "cpu exit $rc_cpu, gpu exit $rc_gpu"
        FAILED=1
    fi
fi

# 3. Benches: GPU f32 one width at a time (a timeout keeps the finished widths), GPU bf16 at
#    d_model 512, this machine's CPU at d_model 512 (for the speed-up), GPU matmul peak.
CRIT=(--warm-up-time 0.5 --measurement-time 2)
for d in 64 256 512; do
    run_step "bench-gpu-d$d" 60 env LPC_BENCH_DEVICE=cuda \
        cargo bench --features cuda --bench train_step -- "${CRIT[@]}" "d$d/"
    rc=$?
    row "train_step bench, GPU f32, d$d" "$(status_of $rc "bench-gpu-d$d")" "table below"
    ((rc == 0)) || FAILED=1
done
run_step bench-gpu-bf16 60 env LPC_BENCH_DEVICE=cuda LPC_BENCH_PRECISION=bf16 \
    cargo bench --features cuda --bench train_step -- "${CRIT[@]}" d512/
rc=$?
row "train_step bench, GPU bf16, d512" "$(status_of $rc bench-gpu-bf16)" "table below"
run_step bench-cpu 60 env LPC_BENCH_DEVICE=cpu \
    cargo bench --features cuda --bench train_step -- "${CRIT[@]}" 'd512/(dpo|lpc-dpo)/'
rc=$?
row "train_step bench, CPU, d512" "$(status_of $rc bench-cpu)" "$(nproc) CPU threads"
run_step matmul-gpu 60 env LPC_BENCH_DEVICE=cuda \
    cargo bench --features cuda --bench matmul -- "${CRIT[@]}"
rc=$?
row "matmul bench, GPU" "$(status_of $rc matmul-gpu)" "f32/bf16/f16, 1024^2 to 8192^2, below"

# Speed-up of the GPU over this machine's CPU, from the two d512 tables (step ms).
step_ms() { awk -F'|' -v m="$2" '$2 == " 512 " && $3 == " " m " " { gsub(/ /, "", $4); print $4; exit }' "$1" 2>/dev/null; }
for m in dpo lpc-dpo; do
    g=$(step_ms "$OUT/bench-gpu-d512.log" "$m")
    c=$(step_ms "$OUT/bench-cpu.log" "$m")
    if [[ -n $g && -n $c ]]; then
        row "speed-up GPU/CPU, $m, d512" "$(awk -v c="$c" -v g="$g" 'BEGIN { printf "%.1fx", c / g }')" "step $c ms (CPU) vs $g ms (GPU f32)"
    fi
done

if [[ -x $BIN ]]; then
    # 4. bf16 smoke against the f32 GPU run.
    run_step smoke-bf16 90 "$BIN" run scenarios/gpu/smoke-bf16.toml --out "$OUT/smoke-bf16" --force -q
    rc=$?
    if ((rc == 0 && rc_gpu == 0)); then
        check_pair "smoke: GPU bf16 vs f32" "$OUT/smoke-gpu/curves.csv" "$OUT/smoke-bf16/curves.csv" "$TOL_BF16"
    else
        row "smoke: GPU bf16 vs f32" "$(status_of $rc smoke-bf16)" "bf16 exit $rc, f32 exit $rc_gpu"
        FAILED=1
    fi

    # 5. One GPU-sized scenario, with what is left of the budget (at most 180 s).
    t0=$(date +%s)
    run_step gpu-sized 180 "$BIN" run scenarios/gpu/two-opposed-check.toml --out "$OUT/gpu-sized" --force -q
    rc=$?
    detail="wall $(($(date +%s) - t0)) s"
    if [[ $rc == 0 && -f $OUT/gpu-sized/metrics.csv ]]; then
        detail+=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "train_seconds") s = i; if ($i == "steps") k = i } next }
            { printf "; %s: %d steps in %.1f s", $1, $k, $s }' "$OUT/gpu-sized/metrics.csv")
    fi
    row "GPU-sized run (gpu/two-opposed-check)" "$(status_of $rc gpu-sized)" "$detail"
    ((rc == 0)) || FAILED=1
fi

# 6. Tables last.
for f in bench-gpu-d64 bench-gpu-d256 bench-gpu-d512 bench-gpu-bf16 bench-cpu; do
    if grep -qE '^## train_step' "$OUT/$f.log" 2>/dev/null; then
        echo
        grep -E '^(##|\|)' "$OUT/$f.log"
    fi
done
if grep -qE '^matmul' "$OUT/matmul-gpu.log" 2>/dev/null; then
    echo
    echo "## matmul on the GPU (criterion: time per product, and FLOP/s printed as elem/s)"
    echo
    grep -E '^matmul|thrpt' "$OUT/matmul-gpu.log"
fi
echo
echo "## gpu-check summary ($(($(date +%s) - START)) s of a ${BUDGET} s budget)"
echo
echo "| check | result | detail |"
echo "|---|---|---|"
printf '%s\n' "${ROWS[@]}"
exit $FAILED
