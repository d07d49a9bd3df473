#!/usr/bin/env bash
# The demo: the ingest half of the pipeline, end to end, on the local AWS emulator.
#
# Run it through `make demo` (which starts the emulator if needed and stops it afterwards).
# It builds the `sluice` CLI, provisions the local resources (`sluice local up`), and runs the
# ingest handler (`sluice invoke ingest`) on a DynamoDB Streams event and on a mixed SQS batch
# of application, Debezium and DMS events with poison bodies among them. Each invocation prints
# the handler's response; the metrics line (on stderr) counts records landed and quarantined.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SLUICE=target/debug/sluice

echo "==> building the sluice CLI"
cargo build --quiet -p sluice-cli

echo "==> provisioning local resources"
"$SLUICE" local up
# Sets the SLUICE_* variables that describe the resources just created.
eval "$("$SLUICE" local env)"

for event in tests/fixtures/ingest/ddb-stream.json tests/fixtures/ingest/sqs-mixed.json; do
    echo "==> sluice invoke ingest --event $event"
    "$SLUICE" invoke ingest --event "$event" --metrics
done

echo "==> done: raw objects are in s3://$SLUICE_RAW_BUCKET/raw/, dead letters on $SLUICE_DLQ_URL"
