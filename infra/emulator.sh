#!/usr/bin/env bash
# Local AWS emulator (moto in server mode) for sluice's integration tests and demo.
#
# Usage: bash infra/emulator.sh {install|start|stop|status|env}
#
#   install    create the virtualenv (default ./.venv, override with SLUICE_VENV) and
#              install requirements-dev.txt into it when that file changed
#   start      install if needed, then start moto_server in the background unless it
#              already answers on the port; waits until it answers. If another program
#              holds the port, says which and how to pick another port
#   stop       stop the emulator started by `start` on the port (.emulator/moto-PORT.pid)
#   status     say whether the emulator answers; exit 0 if it does, 3 if not
#   env        print shell exports pointing AWS clients at the emulator
#   free-port  print a TCP port nothing listens on
#
# Environment:
#   SLUICE_EMULATOR_PORT  port to listen on (default 4566)
#   SLUICE_VENV           virtualenv directory (default <repo>/.venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${SLUICE_EMULATOR_PORT:-4566}"
VENV="${SLUICE_VENV:-$ROOT/.venv}"
REQUIREMENTS="$ROOT/requirements-dev.txt"
STAMP="$VENV/.installed"
STATE_DIR="$ROOT/.emulator"
PID_FILE="$STATE_DIR/moto-$PORT.pid"
LOG_FILE="$STATE_DIR/moto-$PORT.log"
HOST="127.0.0.1"
URL="http://$HOST:$PORT"
PROBE_URL="$URL/moto-api/"
START_TIMEOUT_SECS=30

log() { printf 'emulator: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# True if the emulator answers GET /moto-api/ with a 2xx status.
# Uses python3 (always present) and bypasses any configured HTTP proxy.
answers() {
    python3 - "$PROBE_URL" <<'PY' >/dev/null 2>&1
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(sys.argv[1], timeout=1) as resp:
        sys.exit(0 if 200 <= resp.status < 300 else 1)
except Exception:
    sys.exit(1)
PY
}

# Prints the pid from the pid file if that process is still alive.
live_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(<"$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

cmd_install() {
    [[ -f "$REQUIREMENTS" ]] || die "missing $REQUIREMENTS"
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating virtualenv $VENV"
        python3 -m venv "$VENV"
        rm -f "$STAMP"
    fi
    if [[ ! -f "$STAMP" || "$REQUIREMENTS" -nt "$STAMP" ]]; then
        log "installing requirements-dev.txt into $VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"
        touch "$STAMP"
    fi
}

# True if something accepts connections on the port.
port_taken() {
    python3 - "$HOST" "$PORT" <<'PY' >/dev/null 2>&1
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
PY
}

# The program that listens on the port, when the system says.
port_holder() {
    if command -v ss >/dev/null 2>&1; then
        ss -ltnpH "sport = :$PORT" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/\1/p' | head -n 1
    fi
}

cmd_free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}

cmd_start() {
    cmd_install
    if answers; then
        log "already running at $URL"
        return 0
    fi
    if port_taken && ! live_pid >/dev/null; then
        local holder
        holder="$(port_holder)"
        die "port $PORT is in use by another program${holder:+ ($holder)}, not the emulator; \
pick another port, for example: SLUICE_EMULATOR_PORT=$(cmd_free_port) make demo"
    fi
    mkdir -p "$STATE_DIR"

    local pid spawned=0
    if pid="$(live_pid)"; then
        log "emulator process $pid exists but does not answer yet; waiting"
    else
        rm -f "$PID_FILE"
        log "starting moto_server at $URL (log: ${LOG_FILE#"$ROOT"/})"
        nohup "$VENV/bin/moto_server" -H "$HOST" -p "$PORT" >"$LOG_FILE" 2>&1 </dev/null &
        pid=$!
        spawned=1
        printf '%s\n' "$pid" >"$PID_FILE"
    fi

    local deadline=$((SECONDS + START_TIMEOUT_SECS))
    while ! answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            log "moto_server exited before answering; last log lines:"
            tail -n 30 "$LOG_FILE" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "moto_server did not answer within ${START_TIMEOUT_SECS}s; last log lines:"
            tail -n 30 "$LOG_FILE" >&2 || true
            if ((spawned)); then
                kill "$pid" 2>/dev/null || true
                rm -f "$PID_FILE"
            fi
            exit 1
        fi
        sleep 0.2
    done
    log "running at $URL (pid $pid)"
}

cmd_stop() {
    local pid
    if pid="$(live_pid)"; then
        kill "$pid" 2>/dev/null || true
        # Give it up to 5 s to exit, then force it.
        local i
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
        log "stopped (pid $pid)"
    else
        log "not running (no live pid in ${PID_FILE#"$ROOT"/})"
    fi
    rm -f "$PID_FILE"
}

cmd_status() {
    if answers; then
        echo "emulator: running at $URL"
    else
        echo "emulator: not answering at $URL"
        return 3
    fi
}

cmd_env() {
    cat <<EOF
export AWS_ENDPOINT_URL=$URL
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
EOF
}

usage() {
    sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    free-port) cmd_free_port ;;
    -h | --help | help) usage ;;
    *)
        usage
        exit 2
        ;;
esac
