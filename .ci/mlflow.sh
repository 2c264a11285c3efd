#!/usr/bin/env bash
# Run a throw-away MLflow tracking server on loopback, for spanbus' OTLP export tests.
#
#   .ci/mlflow.sh install   # venv + pinned mlflow (no-op when already there)
#   .ci/mlflow.sh start     # background server on 127.0.0.1:$MLFLOW_PORT (SQLite), waits for /health
#   .ci/mlflow.sh status    # exit 0 when our server is up and ready
#   .ci/mlflow.sh stop      # kill it and delete its working dir (idempotent)
#   .ci/mlflow.sh url       # print the base URL (e.g. http://127.0.0.1:5055)
#
# The server takes OTLP/HTTP (protobuf) at $URL/v1/traces; each request names the experiment
# its traces go to in the header `x-mlflow-experiment-id`. The tests create their own
# experiment through the REST API (POST /api/2.0/mlflow/experiments/create).
#
# Environment (all optional):
#   SPANBUS_MLFLOW_VENV      venv path      (default $HOME/.cache/spanbus/mlflow-venv)
#   SPANBUS_MLFLOW_VERSION   pip version    (default the pin below)
#   SPANBUS_MLFLOW_RUN_DIR   pid/log dir    (default ${TMPDIR:-/tmp}/spanbus-mlflow-$MLFLOW_PORT)
#   SPANBUS_MLFLOW_TIMEOUT   seconds to wait for /health (default 180)
#   MLFLOW_PORT              HTTP port (UI, REST API, OTLP/HTTP /v1/traces; default 5055: 5000
#                            is often taken by other local services)
#
# Verified with mlflow 3.17.2 on Python 3.11 (3.18.0 needs an mlflow-tracing 3.18.0 that PyPI
# does not have yet), 2 cores shared with other builds: install ~50 s into an existing venv,
# 2 min 40 s into a fresh one (wheels from pip's cache; the venv is ~850 MB); start to /health
# 200 ~12 s. The first OTLP request then takes ~7 s while the server loads what it needs to
# store a trace; later ones ~0.05 s for a trace of 5 spans.
set -euo pipefail

MLFLOW_VERSION_PIN="3.17.2"

VENV="${SPANBUS_MLFLOW_VENV:-$HOME/.cache/spanbus/mlflow-venv}"
VERSION="${SPANBUS_MLFLOW_VERSION:-$MLFLOW_VERSION_PIN}"
PORT="${MLFLOW_PORT:-5055}"
RUN_DIR="${SPANBUS_MLFLOW_RUN_DIR:-${TMPDIR:-/tmp}/spanbus-mlflow-$PORT}"
TIMEOUT="${SPANBUS_MLFLOW_TIMEOUT:-180}"
PID_FILE="$RUN_DIR/mlflow.pid"
LOG_FILE="$RUN_DIR/mlflow.log"
WORKDIR_FILE="$RUN_DIR/workdir"
BASE_URL="http://127.0.0.1:$PORT"

log() { echo "mlflow.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

installed_version() {
  [[ -x "$VENV/bin/python" ]] || return 1
  "$VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m
print(m.version("mlflow"))
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
    log "mlflow $VERSION already installed in $VENV"
    return 0
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV"
    mkdir -p "$(dirname "$VENV")"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  fi
  log "installing mlflow==$VERSION into $VENV${have:+ (replacing $have)} ..."
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "mlflow==$VERSION"
  have="$(installed_version || true)"
  [[ "$have" == "$VERSION" ]] || die "install finished but mlflow version is '${have:-none}'"
  log "mlflow $VERSION installed"
}

tail_log() {
  if [[ -f "$LOG_FILE" ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 40 "$LOG_FILE" >&2 || true
  fi
}

cmd_start() {
  [[ -x "$VENV/bin/mlflow" ]] || die "no $VENV/bin/mlflow; run '$0 install' first"
  local pid
  if pid="$(our_pid)"; then
    if http_ok "$BASE_URL/health"; then
      log "already running (pid $pid) at $BASE_URL"
      return 0
    fi
    die "pid $pid from $PID_FILE is alive but $BASE_URL/health is not ready; run '$0 stop' first"
  fi
  if http_ok "$BASE_URL/health" || http_ok "$BASE_URL/"; then
    die "something else already answers on $BASE_URL (not started by this script); set MLFLOW_PORT"
  fi

  mkdir -p "$RUN_DIR"
  rm -f "$PID_FILE"
  local workdir
  workdir="$(mktemp -d "${TMPDIR:-/tmp}/spanbus-mlflow-work.XXXXXX")"
  echo "$workdir" >"$WORKDIR_FILE"
  : >"$LOG_FILE"

  log "starting MLflow $(installed_version || echo '?') on $BASE_URL (workdir $workdir, log $LOG_FILE)"
  # setsid: own process group, so 'stop' can take down the server's workers too.
  # stdin from /dev/null: CI gives no stdin, and nothing must wait on a terminal.
  # One worker: the tests send a few requests at a time, and the machine has 2 cores.
  # No job execution: its scheduler and workers (online scoring, trace archival) start beside
  # the server and slow its first requests for seconds; trace ingestion does not need them.
  (
    cd "$workdir"
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    PYTHONUNBUFFERED=1 \
      exec setsid "$VENV/bin/mlflow" server \
        --host 127.0.0.1 \
        --port "$PORT" \
        --workers 1 \
        --backend-store-uri "sqlite:///$workdir/mlflow.db" \
        --default-artifact-root "$workdir/artifacts" \
        </dev/null >>"$LOG_FILE" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PID_FILE"

  local waited=0
  while ! http_ok "$BASE_URL/health"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "MLflow (pid $pid) exited before becoming ready"
      tail_log
      cmd_stop >/dev/null 2>&1 || true
      exit 1
    fi
    if (( waited >= TIMEOUT )); then
      log "MLflow not ready on $BASE_URL/health after ${TIMEOUT}s"
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
    log "stopping MLflow (pid $pid)"
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
      */spanbus-mlflow-work.*) rm -rf -- "$workdir" ;;
      *) log "not removing unexpected workdir '$workdir'" ;;
    esac
    rm -f "$WORKDIR_FILE"
  fi
}

cmd_status() {
  local pid
  if pid="$(our_pid)" && http_ok "$BASE_URL/health"; then
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
  *)
    echo "usage: $0 {install|start|stop|status|url}" >&2
    exit 2
    ;;
esac
