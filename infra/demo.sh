#!/usr/bin/env bash
# The demo: the whole pipeline, locally, end to end.
#
# Run it through `make demo`, which starts the local emulator first. It builds the `sluice` CLI
# and runs `sluice demo`: a DynamoDB source table and SQS events go through ingest and transform
# into typed tables, a summary is printed, and `sluice audit` proves that nothing was lost.
# Extra arguments go to `sluice demo` (for example `--count 10000` or `--rate 200`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "==> building the sluice CLI"
cargo build --quiet -p sluice-cli

echo "==> sluice demo $*"
target/debug/sluice demo "$@"
