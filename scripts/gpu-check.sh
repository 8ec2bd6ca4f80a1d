#!/usr/bin/env bash
# gpu-check.sh: the prepared GPU check of issues 7 and 11, for a machine with an NVIDIA GPU and
# its driver but no Rust toolchain. It runs prebuilt binaries; it never calls cargo.
#
#   scripts/gpu-check.sh [BUNDLE_DIR]     # default target/gpu-bundle; results under target/gpu-check/
#
# BUNDLE_DIR holds `lpc-bench` and the bench executables `train_step` (and optionally `matmul`),
# built with `--features cuda` (scripts/build-gpu-bundle.sh makes them), each plain or
# xz-compressed (`NAME.xz`, decompressed into $OUT/bin). The repository itself (scenarios/,
# cubecl.toml) must be present: the script runs from its root, so cubecl reads ./cubecl.toml and
# keeps its kernel caches in target/cubecl-cache (docs/PERFORMANCE.md, "GPU kernel caches").
#
# Steps, in order of value, each under its own time bound and the whole under GPU_CHECK_BUDGET
# seconds (default 470, i.e. under 8 minutes; a step that no longer fits is skipped and said so):
#   1. smoke cold: scenarios/gpu/smoke.toml with EMPTY kernel caches (target/cubecl-cache is
#      removed first unless GPU_CHECK_KEEP_CACHE=1), and scenarios/smoke.toml on the CPU for the
#      loss agreement (TOL_F32 relative on val_loss, same host-drawn start);
#   2. smoke warm: the same GPU run again, now with the caches (issue 11: <= 10 s, 0 kernels);
#   3. GPU-sized check: scenarios/gpu/two-opposed-check.toml (d_model 512, 6 layers, 129 tokens);
#   4. bf16: scenarios/gpu/smoke-bf16.toml, compared with step 2's f32 run (TOL_BF16 relative);
#   5. benches: the train_step bench's `gpu-shape` group (DPO and LPC-DPO, K = 8, at the PyTorch
#      table's shape) in f32 and bf16, then the matmul bench if the bundle has it;
#   6. the PyTorch peer (scripts/peers/torch_peer.py) at that shape, f32 and bf16 + SDPA, when
#      python3 has a CUDA-enabled torch;
#   7. kernel fusion off (`--fusion off`, LPC_BENCH_FUSION=off), for choosing the default: smoke
#      cold in a folder of its own (a copy of cubecl.toml there, so its kernel cache starts
#      empty too), then the gpu-shape bench in f32. Compare with steps 1 and 5.
#
# Every lpc-bench step runs with CUBECL_DEBUG_LOG=$OUT/NAME.cubecl.log. cubecl writes one
# `[START_KERNEL_COMPILATION]` block per kernel it compiles (just before NVRTC; a kernel found in
# the persistent cache is not logged), so the kernel count is the number of those lines. The log
# has no timestamps: the script stamps each of those lines as it appears (tail -F) and estimates
# the compile seconds as the sum of the gaps between consecutive stamps, each gap capped at
# COMPILE_GAP_CAP seconds (default 1.0; the issue measured 40-640 ms per kernel), and splits the
# count by phase (warm-up, reference caching, each method's training and scoring) from the
# run's own progress lines, stamped the same way. Note that
# CUBECL_DEBUG_LOG also turns on cubecl's kernel profiling, so those runs are slower than plain
# ones; the benches run without it.
#
# Exit status: 0 when every check that ran passed, 1 otherwise.

set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
BUNDLE=${1:-${GPU_BUNDLE:-target/gpu-bundle}}
OUT=${OUT:-target/gpu-check}
BUDGET=${GPU_CHECK_BUDGET:-470}
TOL_F32=${TOL_F32:-1e-3}
TOL_BF16=${TOL_BF16:-2e-2}
GAP_CAP=${COMPILE_GAP_CAP:-1.0}
CACHE_DIR=target/cubecl-cache
START=$(date +%s)
FAILED=0
ROWS=()

mkdir -p "$OUT/bin"
OUT=$(cd "$OUT" && pwd) # absolute: step 7 runs from another folder
log() { echo "[gpu-check +$(($(date +%s) - START))s] $*" >&2; }
row() { ROWS+=("| $1 | $2 | $3 |"); }

# --- Binaries: plain or .xz, into $OUT/bin. ---
unpack() {
    local name=$1
    if [[ -f $BUNDLE/$name.xz ]]; then
        xz -dc "$BUNDLE/$name.xz" >"$OUT/bin/$name" || return 1
    elif [[ -f $BUNDLE/$name ]]; then
        cp "$BUNDLE/$name" "$OUT/bin/$name" || return 1
    else
        return 1
    fi
    chmod +x "$OUT/bin/$name"
}
if ! unpack lpc-bench; then
    echo "gpu-check: no lpc-bench or lpc-bench.xz in '$BUNDLE' (build it with scripts/build-gpu-bundle.sh)" >&2
    exit 2
fi
BIN=$OUT/bin/lpc-bench
HAVE_TRAIN_STEP=0
HAVE_MATMUL=0
unpack train_step && HAVE_TRAIN_STEP=1
unpack matmul && HAVE_MATMUL=1

# --- CUDA libraries: add the toolkit's and the driver's folders when the loader lacks them. ---
have_lib() {
    local d
    if ldconfig -p 2>/dev/null | grep -qF "$1"; then return 0; fi
    IFS=: read -r -a dirs <<<"${LD_LIBRARY_PATH:-}"
    for d in "${dirs[@]}"; do
        [[ -n $d ]] && compgen -G "$d/$1*" >/dev/null && return 0
    done
    return 1
}
add_lib_dir() {
    if [[ -d $1 ]]; then
        export LD_LIBRARY_PATH="$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        log "LD_LIBRARY_PATH += $1 (for $2)"
    else
        log "$2 not found and $1 does not exist; the CUDA runs will say what is missing"
    fi
}
have_lib libnvrtc.so || add_lib_dir "${CUDA_TOOLKIT_LIB:-/usr/local/cuda-13.0/targets/x86_64-linux/lib}" libnvrtc
have_lib libcuda.so || add_lib_dir "${CUDA_DRIVER_LIB:-/usr/local/nvidia/lib64}" libcuda

if command -v nvidia-smi >/dev/null; then
    log "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)"
else
    log "nvidia-smi not found; the CUDA runs will report whether a GPU can be used"
fi

# Seconds a step may take: its own bound, cut to what is left of the budget (minus 10 s for the
# table). Prints 0 when the step no longer fits.
bound() {
    local left=$((BUDGET - ($(date +%s) - START) - 10))
    if ((left < 15)); then echo 0; elif ((left < $1)); then echo "$left"; else echo "$1"; fi
}

status_of() {
    case $1 in
        0) echo ok ;;
        124 | 137) echo "timed out" ;;
        125) echo "skipped (time)" ;;
        *) echo "failed (exit $1, see $OUT/$2.log)" ;;
    esac
}

# Kernel count and estimated compile seconds of a step, from its cubecl log and stamps.
KERNELS=0
COMPILE_S=0
read_compile_log() {
    local name=$1
    KERNELS=$(grep -cF '[START_KERNEL_COMPILATION]' "$OUT/$name.cubecl.log" 2>/dev/null)
    KERNELS=${KERNELS:-0}
    COMPILE_S=$(awk -v cap="$GAP_CAP" '
        NR > 1 { g = $1 - prev; if (g > cap) g = cap; if (g > 0) s += g }
        { prev = $1 }
        END { if (NR > 0) s += cap / 2; printf "%.1f", s }
    ' "$OUT/$name.stamps" 2>/dev/null)
    COMPILE_S=${COMPILE_S:-0.0}
}

# Kernels per phase of a run: each kernel stamp goes to the phase whose marker line (stamped in
# NAME.log) came last before it. Markers are lpc-bench's own progress lines: "warm-up on",
# "reference log-probs of", "reference log-probs in" (the end of reference caching: training and
# scoring follow) and, where the binary prints them, "training <method>" and "scoring <method>". Prints "phase N, phase N, ...".
phase_counts() {
    local name=$1
    awk '
        FNR == 1 { file++ }
        file == 1 {
            p = ""
            if ($0 ~ /: warm-up on /) p = "warm-up"
            else if ($0 ~ /: reference log-probs of /) p = "reference caching"
            else if ($0 ~ /: reference log-probs in /) p = "training and scoring"
            else if (match($0, /: (training|scoring) [^ ]+/)) p = substr($0, RSTART + 2, RLENGTH - 2)
            if (p != "") { n++; t[n] = $1 + 0; name[n] = p }
            next
        }
        {
            s = $1 + 0; k = "start"
            for (i = 1; i <= n; i++) if (t[i] <= s) k = name[i]
            if (!(k in count)) order[++m] = k
            count[k]++
        }
        END { for (i = 1; i <= m; i++) printf "%s%s %d", (i > 1 ? ", " : ""), order[i], count[order[i]] }
    ' "$OUT/$name.log" "$OUT/$name.stamps" 2>/dev/null
}

# run_step NAME MAX_SECONDS DEBUG_LOG(0|1) COMMAND...: run under `timeout`, output in
# $OUT/NAME.log, with the cubecl compilation log and its stamps when DEBUG_LOG is 1. Sets
# STEP_WALL (seconds).
STEP_WALL=0
run_step() {
    local name=$1 max=$2 debug=$3
    shift 3
    local t
    t=$(bound "$max")
    if ((t == 0)); then
        log "$name: skipped (time budget spent)"
        return 125
    fi
    log "$name: $* (bound ${t}s)"
    local t0 rc pid stamper=""
    t0=$(date +%s.%N)
    rm -f "$OUT/$name.cubecl.log" "$OUT/$name.stamps"
    if ((debug)); then
        : >"$OUT/$name.cubecl.log"
        # Output lines are stamped too (the phase markers), into NAME.log.
        CUBECL_DEBUG_LOG="$OUT/$name.cubecl.log" timeout --kill-after=10 "$t" "$@" \
            > >(while IFS= read -r line; do echo "$EPOCHREALTIME $line"; done >"$OUT/$name.log") 2>&1 &
        pid=$!
        tail --pid="$pid" -s 0.1 -n +1 -F "$OUT/$name.cubecl.log" 2>/dev/null |
            grep --line-buffered -F '[START_KERNEL_COMPILATION]' |
            while read -r _; do echo "$EPOCHREALTIME"; done >"$OUT/$name.stamps" &
        stamper=$!
    else
        timeout --kill-after=10 "$t" "$@" >"$OUT/$name.log" 2>&1 &
        pid=$!
    fi
    wait "$pid"
    rc=$?
    [[ -n $stamper ]] && wait "$stamper"
    STEP_WALL=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    log "$name: exit $rc after ${STEP_WALL}s"
    return $rc
}

# compare_losses A.csv B.csv: max relative difference of val_loss over rows matched by
# (method, step); prints "MAXREL ROWS" or "MISSING".
compare_losses() {
    awk -F, '
        FNR == 1 { c = 0; for (i = 1; i <= NF; i++) if ($i == "val_loss") c = i; col[FILENAME] = c; next }
        FILENAME == ARGV[1] { if (col[FILENAME]) a[$1 "/" $2] = $col[FILENAME]; next }
        col[FILENAME] && ($1 "/" $2) in a {
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
    res=$(compare_losses "$2" "$3")
    if [[ $res == MISSING ]]; then
        row "$1" "FAIL" "no common (method, step) rows"
        FAILED=1
        return
    fi
    local maxrel=${res% *} n=${res#* }
    if awk -v m="$maxrel" -v t="$4" 'BEGIN { exit !(m <= t) }'; then
        row "$1" "PASS" "max relative val_loss difference $maxrel over $n points (tolerance $4)"
    else
        row "$1" "FAIL" "max relative val_loss difference $maxrel over $n points (tolerance $4)"
        FAILED=1
    fi
}

# first_steps DIR: "label first-step s / steady ms" per method, from timing.csv.
first_steps() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "first_step_seconds") f = i; if ($i == "steady_ms_per_step") s = i } next }
        f && s { printf "%s%s first step %.1f s, then %.1f ms/step", sep, $1, $f, $s; sep = "; " }' "$1/timing.csv" 2>/dev/null
}

# scenario_step NAME SCENARIO MAX LIMIT_S LABEL [RUN_ARGS...]: one lpc-bench run (in folder
# $RUN_DIR, default the repository root) with the compilation log; a row with wall time, kernels
# and compile seconds, PASS/FAIL against LIMIT_S (and, for LIMIT_S prefixed "0k:", zero kernels).
RUN_DIR=.
scenario_step() {
    local name=$1 scenario=$2 max=$3 limit=$4 label=$5 rc verdict want_zero=0
    if [[ $limit == 0k:* ]]; then
        want_zero=1
        limit=${limit#0k:}
    fi
    run_step "$name" "$max" 1 env -C "$RUN_DIR" "$BIN" run "$scenario" --out "$OUT/$name" --force "${@:6}"
    rc=$?
    read_compile_log "$name"
    local detail="wall ${STEP_WALL} s, ${KERNELS} kernels compiled, ~${COMPILE_S} s compiling"
    local phases
    phases=$(phase_counts "$name")
    [[ -n $phases ]] && detail+=" (by phase: $phases)"
    local fs
    fs=$(first_steps "$OUT/$name")
    [[ -n $fs ]] && detail+="; $fs"
    if ((rc != 0)); then
        verdict=$(status_of $rc "$name")
        FAILED=1
    elif awk -v w="$STEP_WALL" -v l="$limit" 'BEGIN { exit !(w <= l) }' && ((!want_zero || KERNELS == 0)); then
        verdict="PASS"
    else
        verdict="over target"
        FAILED=1
    fi
    local target="<= ${limit} s"
    ((want_zero)) && target+=", 0 kernels"
    row "$label (target $target)" "$verdict" "$detail"
    return $rc
}

# 1. Smoke cold (empty caches), and the CPU reference run.
if [[ ${GPU_CHECK_KEEP_CACHE:-0} != 1 && -d $CACHE_DIR ]]; then
    log "removing $CACHE_DIR for a cold start (GPU_CHECK_KEEP_CACHE=1 keeps it)"
    rm -rf "$CACHE_DIR"
fi
scenario_step smoke-cold scenarios/gpu/smoke.toml 120 60 "1. smoke cold (gpu/smoke.toml)"
run_step smoke-cpu 20 0 "$BIN" run scenarios/smoke.toml --out "$OUT/smoke-cpu" --force -q
rc_cpu=$?
if ((rc_cpu == 0)) && [[ -f $OUT/smoke-cold/curves.csv ]]; then
    check_pair "smoke: GPU f32 vs CPU" "$OUT/smoke-cpu/curves.csv" "$OUT/smoke-cold/curves.csv" "$TOL_F32"
fi

# 2. Smoke warm (second run, caches filled by step 1).
scenario_step smoke-warm scenarios/gpu/smoke.toml 40 0k:10 "2. smoke warm (gpu/smoke.toml again)"
rc_warm=$?

# 3. The GPU-sized scenario.
scenario_step gpu-sized scenarios/gpu/two-opposed-check.toml 150 180 "3. GPU-sized (gpu/two-opposed-check.toml)"

# 4. bf16 smoke against the f32 GPU run.
scenario_step smoke-bf16 scenarios/gpu/smoke-bf16.toml 50 60 "4. bf16 (gpu/smoke-bf16.toml)"
rc=$?
if ((rc == 0 && rc_warm == 0)); then
    check_pair "smoke: GPU bf16 vs f32" "$OUT/smoke-warm/curves.csv" "$OUT/smoke-bf16/curves.csv" "$TOL_BF16"
fi

# 5. Benches at the GPU-sized shape (no debug log: clean step times), then the matmul peak.
export CRITERION_HOME=$OUT/criterion
CRIT=(--bench --warm-up-time 1 --measurement-time 3)
if ((HAVE_TRAIN_STEP)); then
    for p in f32 bf16; do
        run_step "bench-$p" 45 0 env LPC_BENCH_DEVICE=cuda LPC_BENCH_PRECISION=$p \
            "$OUT/bin/train_step" "${CRIT[@]}" gpu-shape
        rc=$?
        row "5. train_step gpu-shape, $p" "$(status_of $rc "bench-$p")" "table below (PyTorch: f32 53.3/53.8 ms, bf16+SDPA 16.5/21.8 ms)"
        ((rc == 0 || rc == 125)) || FAILED=1
    done
else
    row "5. train_step bench" "not in bundle" "$BUNDLE/train_step(.xz) missing"
fi
if ((HAVE_MATMUL)); then
    run_step matmul 30 0 env LPC_BENCH_DEVICE=cuda "$OUT/bin/matmul" "${CRIT[@]}"
    rc=$?
    row "5. matmul bench" "$(status_of $rc matmul)" "see $OUT/matmul.log"
fi

# 6. The PyTorch peer at the same shape, the same day, where this machine's python3 has torch.
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    run_step peer 60 0 python3 scripts/peers/torch_peer.py --d 512 --layers 6 --heads 8 \
        --prompt 64 --resp 64 --batch 64 --modes f32,bf16-sdpa
    rc=$?
    row "6. PyTorch peer (f32, bf16-sdpa)" "$(status_of $rc peer)" "JSON lines in $OUT/peer.log"
else
    row "6. PyTorch peer" "skipped" "python3 has no CUDA-enabled torch"
fi

# 7. Fusion off: cold smoke with a kernel cache of its own, then the f32 bench.
RUN_DIR=$OUT/unfused-root
rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR" && cp cubecl.toml "$RUN_DIR/"
scenario_step smoke-unfused-cold "$PWD/scenarios/gpu/smoke.toml" 120 60 \
    "7. smoke cold, fusion off (compare step 1)" --fusion off
RUN_DIR=.
if ((HAVE_TRAIN_STEP)); then
    run_step bench-f32-unfused 45 0 env LPC_BENCH_DEVICE=cuda LPC_BENCH_FUSION=off \
        "$OUT/bin/train_step" "${CRIT[@]}" gpu-shape
    rc=$?
    row "7. train_step gpu-shape, f32, fusion off" "$(status_of $rc bench-f32-unfused)" "table below (compare step 5's f32)"
    ((rc == 0 || rc == 125)) || FAILED=1
fi

# Tables last.
for f in bench-f32 bench-bf16 bench-f32-unfused; do
    if grep -qE '^## train_step' "$OUT/$f.log" 2>/dev/null; then
        echo
        grep -E '^(##|\||GPU-sized)' "$OUT/$f.log"
    fi
done
echo
echo "## gpu-check summary ($(($(date +%s) - START)) s of a ${BUDGET} s budget)"
echo
echo "| check | result | detail |"
echo "|---|---|---|"
printf '%s\n' "${ROWS[@]}"
exit $FAILED
