#!/usr/bin/env bash
# Checks template.yaml without an AWS account:
#   1. cfn-lint reports no errors or warnings;
#   2. the SAM transform translates it to CloudFormation (infra/translate_template.py).
#
# Usage: bash infra/check-template.sh
#
# Environment:
#   SLUICE_TOOLS_VENV  virtualenv for the checks (default <repo>/.venv-tools). The packages pinned
#                      in requirements-tools.txt are installed into it when that file changes. It is
#                      kept apart from the emulator's .venv because the two sets pin pydantic
#                      differently.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICE_TOOLS_VENV:-$ROOT/.venv-tools}"
REQUIREMENTS="$ROOT/requirements-tools.txt"
STAMP="$VENV/.installed"
TEMPLATE="$ROOT/template.yaml"

log() { printf 'check-template: %s\n' "$*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating virtualenv $VENV"
    python3 -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$REQUIREMENTS" -nt "$STAMP" ]]; then
    log "installing requirements-tools.txt into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
    touch "$STAMP"
fi

log "cfn-lint $TEMPLATE"
"$VENV/bin/cfn-lint" -- "$TEMPLATE"

log "SAM transform $TEMPLATE"
"$VENV/bin/python" "$ROOT/infra/translate_template.py" "$TEMPLATE"
