#!/usr/bin/env bash
# build-gpu-bundle.sh: build the `cuda` binaries that scripts/gpu-check.sh runs on a GPU machine
# without a Rust toolchain, strip them and xz-compress them into target/gpu-bundle/ (git-ignored
# with the rest of target/), ready to carry.
#
#   scripts/build-gpu-bundle.sh            # lpc-bench, train_step, matmul
#   BUNDLE=/some/dir scripts/build-gpu-bundle.sh
#   CARGO_TARGET_DIR=/other/target scripts/build-gpu-bundle.sh   # keep the CPU build in target/
#
# No CUDA toolkit is needed on the build machine: cudarc loads the CUDA libraries at run time
# (gpu-check.sh points LD_LIBRARY_PATH at them when the loader does not find them).

set -euo pipefail

cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-target/gpu-bundle}
NICE=(nice -n 10)
mkdir -p "$BUNDLE"

echo "build-gpu-bundle: cargo build --release --features cuda --bin lpc-bench" >&2
"${NICE[@]}" cargo build --release --features cuda --bin lpc-bench

# Bench executables: cargo names them train_step-<hash>; read the paths from its JSON messages.
echo "build-gpu-bundle: cargo bench --no-run --features cuda --bench train_step --bench matmul" >&2
messages=$("${NICE[@]}" cargo bench --no-run --features cuda --bench train_step --bench matmul \
    --message-format=json)
bench_path() {
    grep -F "\"name\":\"$1\"" <<<"$messages" | grep -o '"executable":"[^"]*"' | tail -1 |
        sed -e 's/^"executable":"//' -e 's/"$//'
}

pack() {
    local src=$1 name=$2
    if [[ -z $src || ! -f $src ]]; then
        echo "build-gpu-bundle: no executable for $name" >&2
        exit 1
    fi
    cp "$src" "$BUNDLE/$name"
    strip "$BUNDLE/$name"
    xz -T0 -6 -f "$BUNDLE/$name"
    echo "build-gpu-bundle: $BUNDLE/$name.xz ($(du -h "$BUNDLE/$name.xz" | cut -f1))" >&2
}
pack "${CARGO_TARGET_DIR:-target}/release/lpc-bench" lpc-bench
pack "$(bench_path train_step)" train_step
pack "$(bench_path matmul)" matmul
echo "build-gpu-bundle: carry $BUNDLE/ and run scripts/gpu-check.sh $BUNDLE from the repository root" >&2
