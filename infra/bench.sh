#!/usr/bin/env bash
# `make bench`: sluice's handlers and the peers of bench/peers/ on the same generated data, in
# one run, on one core. Prints a table (lines/s, ratio to each peer, peak RSS, cold start, the
# goals) and writes it as JSON and as an SVG plot. The work is done by infra/bench.py; this
# script installs what it needs and builds what it runs.
#
# Usage: bash infra/bench.sh
#
# Environment:
#   BENCH_N          lines of the main transform object and records of the ingest events
#                    (default 100000; 1000000 or more adds the 1,000,000-line growth point)
#   BENCH_GROWTH_MAX 1000000 adds the 1,000,000-line growth point without running the peers on
#                    1,000,000 lines
#   BENCH_TINY=1     the check `make test` runs: debug builds, one run each, small sizes, no
#                    criterion; it still fails when sluice's result differs from the peers'
#   BENCH_RUNS       runs of each sluice measurement and each peer (default 3; 1 when tiny)
#   BENCH_CPU        the core everything is pinned to (default 0)
#   SLUICE_BENCH_VENV  virtualenv of the peers (default <repo>/.venv-bench), from
#                    requirements-bench.txt, installed when that file changes
# Output: target/bench/results.json and target/bench/results.svg (target/bench/tiny/ when tiny).
# Exit status: non-zero when sluice's rows, tombstones, dead letters or sums differ from the
# peers' (a bug), never because a speed goal is not met.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf 'bench: %s\n' "$*" >&2; }

# ensure_venv DIR REQUIREMENTS: creates DIR and installs REQUIREMENTS into it when they changed.
ensure_venv() {
    local venv="$1" requirements="$2" stamp="$1/.installed"
    if [[ ! -x "$venv/bin/python" ]]; then
        log "creating virtualenv $venv"
        python3 -m venv "$venv"
    fi
    if [[ ! -f "$stamp" || "$requirements" -nt "$stamp" ]]; then
        log "installing $(basename "$requirements") into $venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
        touch "$stamp"
    fi
}

VENV="${SLUICE_BENCH_VENV:-$ROOT/.venv-bench}"
ensure_venv "$VENV" "$ROOT/requirements-bench.txt"

TINY="${BENCH_TINY:-}"
[[ "$TINY" == 0 ]] && TINY=""
args=(--n "${BENCH_N:-100000}" --cpu "${BENCH_CPU:-0}")
[[ -n "${BENCH_RUNS:-}" ]] && args+=(--runs "$BENCH_RUNS")
[[ -n "${BENCH_GROWTH_MAX:-}" ]] && args+=(--growth-max "$BENCH_GROWTH_MAX")

if [[ -n "$TINY" ]]; then
    # Debug builds: what `cargo test` built already, linked once more at most.
    log "building sluice-bench and the ingest function (debug)"
    cargo build -q -p sluice-bench -p sluice-ingest
    args+=(--tiny --bin-dir "$ROOT/target/debug" --out "$ROOT/target/bench/tiny")
else
    # A release build of the two binaries takes a few minutes on a 2-core machine, once.
    log "building sluice-bench and the ingest function (release)"
    cargo build --release -p sluice-bench -p sluice-ingest
    log "building the per-stage micro-benchmarks (criterion)"
    cargo bench -q -p sluice-bench --bench stages --no-run
    args+=(--bin-dir "$ROOT/target/release" --out "$ROOT/target/bench" --criterion)
fi

exec "$VENV/bin/python" "$ROOT/infra/bench.py" "${args[@]}"
