#!/usr/bin/env bash
# `make serve` / `make serve-stop`: a local Prefect server and process worker that run the
# deployments of prefect.yaml. Everything lives in .serve/ (git-ignored): PREFECT_HOME
# (database, result cache), logs, pid files and `auth`, the API's basic-auth secret (mode
# 0600). Idempotent: `start` reuses what is running.
#
# Least privilege by default: every API call, events included, needs the secret; flow runs
# read and write only under this checkout's data/ and the sources prefect.yaml names
# (WAVECAST_ALLOWED_ROOTS, which the worker's runs inherit; set it to widen them).
#
#   flows/serve.sh start|stop      env: BIN (.venv/bin), SERVE_HOST, SERVE_PORT, SERVE_POOL,
#                                       SERVE_DIR (.serve), SERVE_PREFECT_HOME,
#                                       WAVECAST_ALLOWED_ROOTS
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
BIN=${BIN:-.venv/bin}
HOST=${SERVE_HOST:-127.0.0.1}
PORT=${SERVE_PORT:-4200}
POOL=${SERVE_POOL:-wavecast}
RUN_DIR=${SERVE_DIR:-$ROOT/.serve}
AUTH_FILE=$RUN_DIR/auth
export PREFECT_HOME=${SERVE_PREFECT_HOME:-$RUN_DIR/prefect-home}
export PREFECT_API_URL=http://$HOST:$PORT/api
export PREFECT_SERVER_ANALYTICS_ENABLED=${PREFECT_SERVER_ANALYTICS_ENABLED:-false}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# Concurrency-slot leases on disk: a slot held by a run killed mid-training (or by a server
# restart) is freed when its lease expires, instead of being lost with the server's memory.
export PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=${PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE:-prefect.server.concurrency.lease_storage.filesystem}

# The pid in NAME.pid if that process is still one of ours (pids get reused), else nothing.
running() {
    local pid
    pid=$(cat "$RUN_DIR/$1.pid" 2>/dev/null) || return 1
    ps -p "$pid" -o command= 2>/dev/null | grep -q prefect && echo "$pid"
}

# Start a command as its own process group (so stop can end it and its children), logging.
launch() {
    local name=$1
    shift
    set -m
    nohup "$@" </dev/null >>"$RUN_DIR/$name.log" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
    set +m
}

# The API's basic-auth string, user:secret, made once and readable by this user only.
auth_string() {
    if [ ! -s "$AUTH_FILE" ]; then
        (umask 077 && "$BIN/python" -c 'import secrets; print("wavecast:" + secrets.token_urlsafe(32))' >"$AUTH_FILE")
    fi
    chmod 600 "$AUTH_FILE"
    cat "$AUTH_FILE"
}

# This checkout's data/ and every file source prefect.yaml's deployments name, comma-separated.
default_roots() {
    "$BIN/python" - "$ROOT" <<'EOF'
import pathlib, sys, yaml
root = pathlib.Path(sys.argv[1])
roots = {root / "data"}
for deployment in yaml.safe_load((root / "prefect.yaml").read_text())["deployments"]:
    series = ((deployment.get("parameters") or {}).get("config") or {}).get("series") or {}
    if series.get("source", "sine") != "sine" and "://" not in series["source"]:
        roots.add(root / series["source"])
print(",".join(sorted(map(str, roots))))
EOF
}

healthy() {
    "$BIN/python" - "$PREFECT_API_URL/health" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
EOF
}

wait_healthy() {
    local deadline=$((SECONDS + 180))
    until healthy; do
        if ! running server >/dev/null; then
            echo "serve: the server exited; last lines of $RUN_DIR/server.log:" >&2
            tail -n 20 "$RUN_DIR/server.log" >&2
            exit 1
        fi
        if ((SECONDS > deadline)); then
            echo "serve: no answer from $PREFECT_API_URL/health after 180 s" >&2
            exit 1
        fi
        sleep 1
    done
}

start() {
    mkdir -p "$RUN_DIR" "$PREFECT_HOME"
    PREFECT_SERVER_API_AUTH_STRING=$(auth_string)
    export PREFECT_SERVER_API_AUTH_STRING PREFECT_API_AUTH_STRING=$PREFECT_SERVER_API_AUTH_STRING
    WAVECAST_ALLOWED_ROOTS=${WAVECAST_ALLOWED_ROOTS:-$(default_roots)}
    export WAVECAST_ALLOWED_ROOTS
    if pid=$(running server); then
        echo "serve: server already running (pid $pid)"
    else
        echo "serve: starting the Prefect server on $HOST:$PORT (log: $RUN_DIR/server.log)"
        launch server "$BIN/prefect" server start --host "$HOST" --port "$PORT"
    fi
    wait_healthy
    echo "serve: server healthy at $PREFECT_API_URL"
    if ! "$BIN/prefect" work-pool inspect "$POOL" >/dev/null 2>&1; then
        # Quiet: its "start a worker" hint would mislead, this script starts the worker.
        "$BIN/prefect" work-pool create "$POOL" --type process >"$RUN_DIR/pool.log" 2>&1 ||
            { cat "$RUN_DIR/pool.log" >&2; exit 1; }
        echo "serve: work pool '$POOL' created"
    fi
    # prefect.yaml's pull step records {{ $PWD }}: this checkout, whatever make's caller's was.
    # Its output goes to a log: it prints a "start a worker" hint per deployment, and this
    # script starts the worker itself. A failure shows the whole log.
    if ! PWD=$ROOT "$BIN/prefect" --no-prompt deploy --all >"$RUN_DIR/deploy.log" 2>&1; then
        cat "$RUN_DIR/deploy.log" >&2
        echo "serve: prefect deploy failed (log: $RUN_DIR/deploy.log)" >&2
        exit 1
    fi
    deployed=$(grep -c "successfully created" "$RUN_DIR/deploy.log" || true)
    echo "serve: $deployed deployments of prefect.yaml deployed (log: $RUN_DIR/deploy.log)"
    if pid=$(running worker); then
        echo "serve: worker already running (pid $pid)"
    else
        echo "serve: starting a process worker on pool '$POOL' (log: $RUN_DIR/worker.log)"
        # It looks for runs to start every 2 s, not Prefect's 10: a burst of drift events
        # queues its retrains one at a time, and each waited ~5 s on average to be picked up.
        PREFECT_WORKER_QUERY_SECONDS=${PREFECT_WORKER_QUERY_SECONDS:-2} \
            launch worker "$BIN/prefect" worker start --pool "$POOL"
    fi
    cat <<EOF

Prefect UI:  http://$HOST:$PORT    (Deployments: retrain/* (incl. retrain/dask), forecast/*, monitor/*)
             sign in with the contents of $AUTH_FILE (user:password)
Use it from this shell:  export PREFECT_API_URL=$PREFECT_API_URL
                         export PREFECT_API_AUTH_STRING="\$(cat $AUTH_FILE)"
Runs may touch only:     $WAVECAST_ALLOWED_ROOTS
Run now:                 $BIN/prefect deployment run retrain/scheduled-retrain --watch
Stop:                    make serve-stop
EOF
}

# SIGINT (what Ctrl-C sends; the worker finishes cleanly on it), then SIGTERM, then SIGKILL.
stop_one() {
    local name=$1 pid signal waited
    if ! pid=$(running "$name"); then
        rm -f "$RUN_DIR/$name.pid"
        echo "serve: no $name running"
        return 0
    fi
    for signal in INT TERM KILL; do
        kill -s "$signal" -- "-$pid" 2>/dev/null || true
        for waited in $(seq 1 20); do
            kill -0 "$pid" 2>/dev/null || break 2
            sleep 0.5
        done
    done
    rm -f "$RUN_DIR/$name.pid"
    echo "serve: $name stopped (pid $pid, SIG$signal after ${waited}x0.5 s)"
}

case ${1:-} in
start) start ;;
stop)
    stop_one worker # first: a worker whose server is gone keeps retrying it
    stop_one server
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
