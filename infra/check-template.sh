#!/usr/bin/env bash
# Checks template.yaml without an AWS account:
#   1. cfn-lint reports no errors or warnings;
#   2. `sam validate --lint` calls it a valid SAM template;
#   3. the SAM transform translates it to CloudFormation (infra/translate_template.py);
#   4. checkov reports no failed check (each accepted finding is skipped in the template, under
#      the resource's Metadata, with its reason).
#
# Usage: bash infra/check-template.sh
#
# Environment:
#   SLUICE_TOOLS_VENV    virtualenv for 1-3 (default <repo>/.venv-tools), from requirements-tools.txt
#   SLUICE_CHECKOV_VENV  virtualenv for checkov (default <repo>/.venv-checkov), from
#                        requirements-checkov.txt
# Each is installed when its requirements file changes. They are kept apart from each other and
# from the emulator's .venv because their pins differ.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="$ROOT/template.yaml"

log() { printf 'check-template: %s\n' "$*" >&2; }

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

TOOLS="${SLUICE_TOOLS_VENV:-$ROOT/.venv-tools}"
CHECKOV="${SLUICE_CHECKOV_VENV:-$ROOT/.venv-checkov}"
ensure_venv "$TOOLS" "$ROOT/requirements-tools.txt"
ensure_venv "$CHECKOV" "$ROOT/requirements-checkov.txt"

log "cfn-lint $TEMPLATE"
"$TOOLS/bin/cfn-lint" -- "$TEMPLATE"

log "sam validate --lint $TEMPLATE"
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
    "$TOOLS/bin/sam" validate --lint --template-file "$TEMPLATE"

log "SAM transform $TEMPLATE"
"$TOOLS/bin/python" "$ROOT/infra/translate_template.py" "$TEMPLATE"

log "checkov $TEMPLATE"
set +e
out="$("$CHECKOV/bin/checkov" --file "$TEMPLATE" --framework cloudformation --compact --skip-download 2>&1)"
rc=$?
set -e
if ((rc != 0)); then
    printf '%s\n' "$out" | sed 's/^/  /' >&2
    log "checkov found failed checks: fix them, or skip one in the resource's Metadata with its reason"
    exit 1
fi
printf '%s\n' "$out" | grep -E 'Passed checks' | sed 's/^ */  /' >&2 || true
