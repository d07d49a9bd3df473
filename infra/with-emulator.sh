#!/usr/bin/env bash
# Run a command with the local AWS emulator available.
#
# Usage: bash infra/with-emulator.sh CMD [ARGS...]
#
# Starts the emulator (infra/emulator.sh start) unless it already answers, exports
# the AWS_* variables pointing at it (keeping any already set), runs CMD, and stops
# the emulator afterwards only if this invocation started it. Exits with CMD's status.
set -euo pipefail

if (($# == 0)); then
    echo "usage: bash infra/with-emulator.sh CMD [ARGS...]" >&2
    exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EMULATOR=(bash "$HERE/emulator.sh")

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
    echo "emulator: already running; leaving it running afterwards" >&2
fi

# Point AWS clients at the emulator unless the caller chose otherwise.
while IFS= read -r line; do
    assignment="${line#export }"
    name="${assignment%%=*}"
    if [[ -z "${!name:-}" ]]; then
        export "$assignment"
    fi
done < <("${EMULATOR[@]}" env)

status=0
"$@" || status=$?
exit "$status"
