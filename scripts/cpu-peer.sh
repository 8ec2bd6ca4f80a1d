#!/usr/bin/env bash
# One-thread CPU training step, lpc-bench beside its PyTorch peer, interleaved in the same
# minutes (issue 11's CPU table; docs/PERFORMANCE.md "The CPU gap").
#
#   scripts/cpu-peer.sh [ROUNDS]          # default 3 rounds
#   PYTHON=/path/to/python scripts/cpu-peer.sh
#
# Each round runs, for d_model 64 and 256 and for DPO and LPC-DPO (K = 8), lpc-bench's
# step_probe (RAYON_NUM_THREADS=1) and scripts/peers/torch_peer.py (OMP_NUM_THREADS=1,
# --device cpu) on the same shape: vocabulary 17 / 16, 6 + 1 + 6 tokens, 2 layers, 4 heads,
# d_ff = 4 d, batch 64 pairs, cached reference log-probs, Adam with clipping. Prints one line
# per run (median and minimum ms) and, at the end, the median over rounds of each side's
# median and their ratio. Needs PyTorch in $PYTHON (default python3); nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
python=${PYTHON:-python3}
if ! "$python" -c 'import torch' 2>/dev/null; then
    echo "cpu-peer: $python cannot import torch; set PYTHON to an interpreter that has PyTorch" >&2
    exit 2
fi
# One build; its JSON messages name the bench executable (cargo appends a hash to it).
probe=$(cargo bench --bench step_probe --no-run --message-format=json 2>/dev/null |
    "$python" -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")=="step_probe" and m.get("executable"):
        print(m["executable"])')
if [ -z "$probe" ]; then
    echo "cpu-peer: cargo bench --bench step_probe --no-run did not build step_probe" >&2
    exit 1
fi
echo "cpu-peer: $probe"
log=$(mktemp)
for r in $(seq "$rounds"); do
    for d in 64 256; do
        steps=$([ "$d" = 64 ] && echo 60 || echo 15)
        for m in dpo lpc-dpo; do
            line=$(RAYON_NUM_THREADS=1 "$probe" "$d" "$steps" "$m")
            echo "round $r lpc-bench $line"
            med=$(sed -E 's/.*median ([0-9.]+) ms.*/\1/' <<<"$line")
            echo "lpc-bench $d $m $med" >>"$log"
        done
        OMP_NUM_THREADS=1 "$python" scripts/peers/torch_peer.py --device cpu --d "$d" --layers 2 \
            --heads 4 --prompt 6 --resp 6 --modes f32 --steps "$steps" 2>/dev/null |
            while read -r json; do
                echo "round $r pytorch $json"
                "$python" -c 'import json,sys; j=json.loads(sys.argv[1]); print("pytorch", j["d"], j["method"], j["median_ms"])' "$json" >>"$log"
            done
    done
done
echo
echo "| d_model | method | lpc-bench median ms | PyTorch median ms | ratio |"
echo "|---:|---|---:|---:|---:|"
"$python" - "$log" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    who, d, m, ms = line.split()
    runs.setdefault((int(d), m, who), []).append(float(ms))
for d in (64, 256):
    for m in ("dpo", "lpc-dpo"):
        a = statistics.median(runs[(d, m, "lpc-bench")])
        b = statistics.median(runs[(d, m, "pytorch")])
        print(f"| {d} | {m} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
PY
rm -f "$log"
