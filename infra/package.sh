#!/usr/bin/env bash
# Builds every Lambda function of the workspace for arm64 (provided.al2023) with cargo-lambda, in
# release mode, and prints each bootstrap's size and the time it took. `sam build` builds the same
# way (BuildMethod rust-cargolambda); this checks the build without SAM or Docker.
#
# Usage: bash infra/package.sh
#
# Installs what it needs: cargo-lambda and zig (requirements-package.txt) into
# SLUICE_PACKAGE_VENV (default <repo>/.venv-package), and the Rust target
# aarch64-unknown-linux-gnu with rustup when it is missing. Output: target/lambda/<name>/bootstrap.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICE_PACKAGE_VENV:-$ROOT/.venv-package}"
REQUIREMENTS="$ROOT/requirements-package.txt"
STAMP="$VENV/.installed"
TARGET=aarch64-unknown-linux-gnu
FUNCTIONS=(ingest transform redrive scaler)

log() { printf 'package: %s\n' "$*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$REQUIREMENTS" -nt "$STAMP" ]]; then
    log "installing requirements-package.txt into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"

if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "adding the Rust target $TARGET"
    rustup target add "$TARGET"
fi

bins=()
for f in "${FUNCTIONS[@]}"; do bins+=(--bin "$f"); done
log "cargo lambda build --release --arm64 ${bins[*]}"
start=$(date +%s)
(cd "$ROOT" && cargo lambda build --release --arm64 "${bins[@]}")
elapsed=$(($(date +%s) - start))

printf '%-10s %12s  %s\n' function bytes bootstrap
for f in "${FUNCTIONS[@]}"; do
    file="$ROOT/target/lambda/$f/bootstrap"
    if [[ ! -f "$file" ]]; then
        log "no $file was built"
        exit 1
    fi
    printf '%-10s %12s  %s\n' "$f" "$(stat -c %s "$file")" "${file#"$ROOT"/}"
done
printf 'built in %d s\n' "$elapsed"
