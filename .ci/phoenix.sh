#!/usr/bin/env bash
# Run a throw-away Arize Phoenix on loopback, for spanbus' OTLP export tests.
#
#   .ci/phoenix.sh install   # venv + pinned arize-phoenix (no-op when already there)
#   .ci/phoenix.sh start     # background server on 127.0.0.1:$PHOENIX_PORT, waits for /readyz
#   .ci/phoenix.sh status    # exit 0 when our server is up and ready
#   .ci/phoenix.sh stop      # kill it and delete its working dir (idempotent)
#   .ci/phoenix.sh url       # print the base URL (e.g. http://127.0.0.1:6006)
#   .ci/phoenix.sh grpc-url  # print the OTLP/gRPC URL (e.g. http://127.0.0.1:4317)
#
# Environment (all optional):
#   SPANBUS_PHOENIX_VENV      venv path      (default $HOME/.cache/spanbus/phoenix-venv)
#   SPANBUS_PHOENIX_VERSION   pip version    (default the pin below)
#   SPANBUS_PHOENIX_RUN_DIR   pid/log dir    (default ${TMPDIR:-/tmp}/spanbus-phoenix-$PHOENIX_PORT)
#   SPANBUS_PHOENIX_TIMEOUT   seconds to wait for /readyz (default 180)
#   PHOENIX_PORT              HTTP port (UI, REST API, OTLP/HTTP /v1/traces; default 6006)
#   PHOENIX_GRPC_PORT         OTLP/gRPC port (default 4317). Note: Phoenix binds gRPC on [::]
#                             (all interfaces) whatever PHOENIX_HOST says; HTTP honours it.
#                             If that port is taken, Phoenix exits at startup with
#                             "Failed to bind to address [::]:4317": pick another one.
#
# Verified with arize-phoenix 20.26.1 on Python 3.11: install ~75 s (fresh venv),
# start to /readyz 200 ~16 s on 2 cores.
set -euo pipefail

PHOENIX_VERSION_PIN="20.26.1"

VENV="${SPANBUS_PHOENIX_VENV:-$HOME/.cache/spanbus/phoenix-venv}"
VERSION="${SPANBUS_PHOENIX_VERSION:-$PHOENIX_VERSION_PIN}"
PORT="${PHOENIX_PORT:-6006}"
GRPC_PORT="${PHOENIX_GRPC_PORT:-4317}"
RUN_DIR="${SPANBUS_PHOENIX_RUN_DIR:-${TMPDIR:-/tmp}/spanbus-phoenix-$PORT}"
TIMEOUT="${SPANBUS_PHOENIX_TIMEOUT:-180}"
PID_FILE="$RUN_DIR/phoenix.pid"
LOG_FILE="$RUN_DIR/phoenix.log"
WORKDIR_FILE="$RUN_DIR/workdir"
BASE_URL="http://127.0.0.1:$PORT"

log() { echo "phoenix.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

installed_version() {
  [[ -x "$VENV/bin/python" ]] || return 1
  "$VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m
print(m.version("arize-phoenix"))
PY
}

# GET $1, succeed only on HTTP 200. curl when present, else the venv's (or any) python.
http_ok() {
  local url="$1"
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null
  else
    local py="python3"
    [[ -x "$VENV/bin/python" ]] && py="$VENV/bin/python"
    "$py" - "$url" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
  fi
}

our_pid() {
  # Print the pid from the pid file if that process is still alive.
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

cmd_install() {
  local have=""
  have="$(installed_version || true)"
  if [[ "$have" == "$VERSION" ]]; then
    log "arize-phoenix $VERSION already installed in $VENV"
    return 0
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  fi
  log "installing arize-phoenix==$VERSION into $VENV${have:+ (replacing $have)} ..."
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "arize-phoenix==$VERSION"
  have="$(installed_version || true)"
  [[ "$have" == "$VERSION" ]] || die "install finished but arize-phoenix version is '${have:-none}'"
  log "arize-phoenix $VERSION installed"
}

tail_log() {
  if [[ -f "$LOG_FILE" ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2 || true
  fi
}

cmd_start() {
  [[ -x "$VENV/bin/phoenix" ]] || die "no $VENV/bin/phoenix; run '$0 install' first"
  local pid
  if pid="$(our_pid)"; then
    if http_ok "$BASE_URL/readyz"; then
      log "already running (pid $pid) at $BASE_URL"
      return 0
    fi
    die "pid $pid from $PID_FILE is alive but $BASE_URL/readyz is not ready; run '$0 stop' first"
  fi
  if http_ok "$BASE_URL/readyz" || http_ok "$BASE_URL/"; then
    die "something else already answers on $BASE_URL (not started by this script); set PHOENIX_PORT"
  fi

  mkdir -p "$RUN_DIR"
  rm -f "$PID_FILE"
  local workdir
  workdir="$(mktemp -d "${TMPDIR:-/tmp}/spanbus-phoenix-work.XXXXXX")"
  echo "$workdir" >"$WORKDIR_FILE"
  : >"$LOG_FILE"

  log "starting Phoenix $(installed_version || echo '?') on $BASE_URL (workdir $workdir, log $LOG_FILE)"
  # setsid: own process group, so 'stop' can take down any children too.
  # stdin from /dev/null: CI gives no stdin, and nothing must wait on a terminal.
  PHOENIX_TELEMETRY_ENABLED=false \
  PHOENIX_ALLOW_EXTERNAL_RESOURCES=false \
  PHOENIX_WORKING_DIR="$workdir" \
  PHOENIX_HOST=127.0.0.1 \
  PHOENIX_PORT="$PORT" \
  PHOENIX_GRPC_PORT="$GRPC_PORT" \
  PHOENIX_LOG_MIGRATIONS=false \
  PHOENIX_DISABLE_AGENT_ASSISTANT=true \
  PHOENIX_AGENTS_DISABLE_BASH=true \
  PHOENIX_ENABLE_AUTH=false \
  PYTHONUNBUFFERED=1 \
    setsid "$VENV/bin/phoenix" serve </dev/null >>"$LOG_FILE" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local waited=0
  while ! http_ok "$BASE_URL/readyz"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "Phoenix (pid $pid) exited before becoming ready"
      tail_log
      cmd_stop >/dev/null 2>&1 || true
      exit 1
    fi
    if (( waited >= TIMEOUT )); then
      log "Phoenix not ready on $BASE_URL/readyz after ${TIMEOUT}s"
      tail_log
      cmd_stop >/dev/null 2>&1 || true
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "ready after ~${waited}s: $BASE_URL (OTLP/HTTP: $BASE_URL/v1/traces, pid $pid)"
}

cmd_stop() {
  local pid=""
  if pid="$(our_pid)"; then
    log "stopping Phoenix (pid $pid)"
    # Negative pid = the whole process group made by setsid.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local _
    for _ in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid did not exit after SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  else
    log "not running (no live pid in $PID_FILE)"
  fi
  rm -f "$PID_FILE"
  if [[ -f "$WORKDIR_FILE" ]]; then
    local workdir
    workdir="$(cat "$WORKDIR_FILE")"
    # Only ever delete a dir this script made.
    case "$workdir" in
      */spanbus-phoenix-work.*) rm -rf -- "$workdir" ;;
      *) log "not removing unexpected workdir '$workdir'" ;;
    esac
    rm -f "$WORKDIR_FILE"
  fi
}

cmd_status() {
  local pid
  if pid="$(our_pid)" && http_ok "$BASE_URL/readyz"; then
    log "running (pid $pid) and ready at $BASE_URL"
    return 0
  fi
  log "not running or not ready at $BASE_URL"
  return 1
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) echo "$BASE_URL" ;;
  grpc-url) echo "http://127.0.0.1:$GRPC_PORT" ;;
  *)
    echo "usage: $0 {install|start|stop|status|url|grpc-url}" >&2
    exit 2
    ;;
esac
