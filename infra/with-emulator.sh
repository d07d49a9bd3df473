#!/usr/bin/env bash
# Run a command with an AWS-compatible endpoint available.
#
# Usage: bash infra/with-emulator.sh CMD [ARGS...]
#
# With AWS_ENDPOINT_URL set, CMD runs against that endpoint (LocalStack, say) and nothing is
# started. Otherwise a private emulator is started on a free port, so another emulator or a
# LocalStack on 4566 changes nothing; CMD runs with the AWS_* variables pointing at it, and the
# emulator is stopped afterwards. SLUICE_EMULATOR_PORT picks the port instead (an emulator
# already answering there is reused and left running). Exits with CMD's status.
set -euo pipefail

if (($# == 0)); then
    echo "usage: bash infra/with-emulator.sh CMD [ARGS...]" >&2
    exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EMULATOR=(bash "$HERE/emulator.sh")

if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then
    echo "with-emulator: using AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" >&2
    export AWS_REGION="${AWS_REGION:-us-east-1}"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
    exec "$@"
fi

if [[ -z "${SLUICE_EMULATOR_PORT:-}" ]]; then
    SLUICE_EMULATOR_PORT="$("${EMULATOR[@]}" free-port)"
fi
export SLUICE_EMULATOR_PORT

started=0
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if ((started)); then
        "${EMULATOR[@]}" stop || true
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! "${EMULATOR[@]}" status >/dev/null; then
    # Set before starting so a start that fails half-way is cleaned up too.
    started=1
    "${EMULATOR[@]}" start
else
    echo "emulator: already running on port $SLUICE_EMULATOR_PORT; leaving it running afterwards" >&2
fi

# Point AWS clients at this emulator.
while IFS= read -r line; do
    export "${line#export }"
done < <("${EMULATOR[@]}" env)

status=0
"$@" || status=$?
exit "$status"
