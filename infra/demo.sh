#!/usr/bin/env bash
# End-to-end demo against the local AWS emulator.
#
# Run it through `make demo` (which wraps it in infra/with-emulator.sh), or with
# the emulator already running. It builds the `sluice` CLI, provisions the local
# resources (`sluice local up`), and pushes the demo SQS event through the ingest
# function (`sluice invoke ingest`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SLUICE=target/debug/sluice
EVENT=tests/fixtures/ingest/demo-sqs.json

echo "==> building the sluice CLI"
cargo build -p sluice-cli

echo "==> provisioning local resources"
"$SLUICE" local up
# Sets the SLUICE_* variables that describe the resources just created.
eval "$("$SLUICE" local env)"

echo "==> invoking ingest with $EVENT"
"$SLUICE" invoke ingest --event "$EVENT"
