#!/usr/bin/env bash
# One-command development stack: PostgreSQL + Redis, `migrate`, one worker and the server.
#
#   ./dev.sh               build (`cargo build --release`, a no-op when it is up to date), run
#   ./dev.sh --no-build    use target/release/inference-engine as it is
#   ./dev.sh --dry-run     print what would be used and done, then exit (starts nothing)
#   ./dev.sh --write-env   also create .env from .env.example when there is none
#
# Environment: PORT (default 8000), HOST (default 127.0.0.1), DATABASE_URL and REDIS_URL. A
# DATABASE_URL from the environment or from .env is used as it is: dev.sh neither starts a
# PostgreSQL for it nor creates its database. Without one, dev.sh uses (and creates) the
# database inference_dev on the local PostgreSQL. REDIS_URL defaults to redis://127.0.0.1:6379.
# The engine loads .env itself when there is one; real environment variables win over it.
#
# PostgreSQL and Redis: with Docker when `docker info` works (the postgres and redis services
# of deploy/docker-compose.yml, PostgreSQL with trust auth on 127.0.0.1), otherwise the locally
# installed servers, started only if they are not answering. Ctrl-C stops the worker and the
# server; PostgreSQL and Redis are left running.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
}

build=1
dry_run=0
write_env=0
for arg in "$@"; do
    case "$arg" in
    --no-build) build=0 ;;
    --dry-run) dry_run=1 ;;
    --write-env) write_env=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "error: unknown argument: $arg (see --help)" >&2
        exit 2
        ;;
    esac
done

# The last `NAME=value` of .env (quotes removed), as the engine's .env loader reads it.
env_file_value() {
    [[ -f .env ]] || return 0
    local line value=
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line#export }"
        if [[ "$line" == "$1="* ]]; then
            value="${line#"$1"=}"
            value="${value%\"}" value="${value#\"}"
            value="${value%\'}" value="${value#\'}"
        fi
    done <.env
    printf '%s' "$value"
}

# A URL without its password, for printing.
redacted() {
    sed -E 's#^([a-z0-9+]+://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"
}

PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
DEFAULT_DATABASE="inference_dev"
if [[ -n "${DATABASE_URL:-}" ]]; then
    database_source="the environment"
elif [[ -n "$(env_file_value DATABASE_URL)" ]]; then
    DATABASE_URL="$(env_file_value DATABASE_URL)"
    database_source=".env"
else
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DEFAULT_DATABASE"
    database_source=""
fi
export DATABASE_URL
export REDIS_URL="${REDIS_URL:-$(env_file_value REDIS_URL)}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
# The binary `cargo build --release` (and the README's `cargo run --release`) puts there.
BIN="${CARGO_TARGET_DIR:-target}/release/inference-engine"
BUILD_CMD=(cargo build --release)
LOG_DIR="data/dev"
STOP_DEADLINE_S=$((${SHUTDOWN_TIMEOUT_S:-30} + 5))

say() { printf '==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# wait_for NAME SECONDS COMMAND...: runs COMMAND until it succeeds, or fails after SECONDS.
wait_for() {
    local name=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "$name did not answer within ${seconds}s"
        fi
        sleep 0.5
    done
}

# --- the plan ---------------------------------------------------------------------------------
if [[ -n "$database_source" ]]; then
    say "job store: $(redacted "$DATABASE_URL") (DATABASE_URL from $database_source: used as it is, no database created)"
else
    say "job store: $DATABASE_URL (database $DEFAULT_DATABASE on the local PostgreSQL, created if missing)"
fi
say "queue: $(redacted "$REDIS_URL")"
if ((build)); then
    say "binary: $BIN (built by '${BUILD_CMD[*]}', which does nothing when it is up to date)"
else
    say "binary: $BIN (--no-build: as it is)"
fi
if [[ -f .env ]]; then
    say ".env: loaded by the engine (real environment variables win)"
elif ((write_env)); then
    say ".env: will be created from .env.example (--write-env)"
else
    say ".env: none (the defaults of .env.example apply; --write-env creates one)"
fi
say "server: http://$HOST:$PORT, logs in $LOG_DIR/"
if ((dry_run)); then
    say "--dry-run: nothing started"
    exit 0
fi

# --- .env -------------------------------------------------------------------------------------
if ((write_env)) && [[ ! -f .env ]]; then
    cp .env.example .env
    say "wrote $PWD/.env (a copy of .env.example)"
fi

# --- PostgreSQL and Redis ---------------------------------------------------------------------
compose_cmd=()
compose() {
    # Only the postgres and redis services are used; API_KEYS must be set for the file to
    # interpolate. Trust auth applies when the volume is first created (port bound to 127.0.0.1).
    API_KEYS="${API_KEYS:-unused-dev.sh-runs-postgres-and-redis-only}" \
        POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-trust}" \
        "${compose_cmd[@]}" -f deploy/docker-compose.yml "$@"
}

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    if docker compose version >/dev/null 2>&1; then
        compose_cmd=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        compose_cmd=(docker-compose)
    else
        die "Docker is running but neither 'docker compose' nor 'docker-compose' is installed"
    fi
    if [[ -z "$database_source" ]]; then
        say "starting PostgreSQL with Docker (deploy/docker-compose.yml)"
        compose up -d postgres
        wait_for PostgreSQL 60 compose exec -T postgres pg_isready -U postgres -q
    fi
    say "starting Redis with Docker (deploy/docker-compose.yml)"
    compose up -d redis
    wait_for Redis 30 compose exec -T redis redis-cli ping
    psql_admin() { compose exec -T postgres psql -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
else
    say "Docker is not available: using the locally installed PostgreSQL and Redis"
    if [[ -n "$database_source" ]]; then
        : # the user's PostgreSQL: `migrate` below says so if it cannot be reached
    elif ! pg_isready -h 127.0.0.1 -p 5432 -q >/dev/null 2>&1; then
        command -v pg_ctlcluster >/dev/null 2>&1 || die "PostgreSQL is not answering on 127.0.0.1:5432 and pg_ctlcluster is not installed"
        # shellcheck disable=SC2012 # one directory per installed major version
        pg_version="$(ls /etc/postgresql | head -n1)"
        [[ -n "$pg_version" ]] || die "no PostgreSQL cluster under /etc/postgresql"
        say "starting PostgreSQL $pg_version"
        pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
    fi
    if [[ -z "$database_source" ]]; then
        wait_for PostgreSQL 60 pg_isready -h 127.0.0.1 -p 5432 -q
    fi
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        command -v redis-server >/dev/null 2>&1 || die "Redis is not answering on 127.0.0.1:6379 and redis-server is not installed"
        say "starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null
    fi
    wait_for Redis 30 redis-cli -h 127.0.0.1 -p 6379 ping
    psql_admin() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
fi
say "PostgreSQL and Redis are answering${database_source:+ (PostgreSQL: yours, checked by migrate)}"

if [[ -z "$database_source" ]] &&
    [[ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DEFAULT_DATABASE'")" != 1 ]]; then
    psql_admin -c "CREATE DATABASE $DEFAULT_DATABASE"
    say "created database $DEFAULT_DATABASE"
fi

# --- the engine -------------------------------------------------------------------------------
if ((build)); then
    say "${BUILD_CMD[*]}"
    "${BUILD_CMD[@]}"
fi
[[ -x "$BIN" ]] || die "$BIN not found: run without --no-build"

say "migrating the job store"
"$BIN" migrate

mkdir -p "$LOG_DIR"
worker_pid=""
server_pid=""

# shellcheck disable=SC2317 # called from the EXIT trap
# stop PID NAME: SIGTERM, then wait up to STOP_DEADLINE_S, then SIGKILL.
stop() {
    local pid=$1 name=$2
    if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_DEADLINE_S))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "warning: $name (pid $pid) did not stop within ${STOP_DEADLINE_S}s: killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    wait "$pid" 2>/dev/null || true
    say "$name stopped"
}

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # The server first (it drains in-flight requests), then the worker (it finishes its jobs).
    stop "$server_pid" server
    stop "$worker_pid" worker
    say "PostgreSQL and Redis are still running (stop them yourself if you want)"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$BIN" worker >"$LOG_DIR/worker.log" 2>&1 &
worker_pid=$!
"$BIN" serve --host "$HOST" --port "$PORT" >"$LOG_DIR/server.log" 2>&1 &
server_pid=$!
say "worker pid $worker_pid (log $LOG_DIR/worker.log), server pid $server_pid (log $LOG_DIR/server.log)"

case "$HOST" in
0.0.0.0 | 127.0.0.1 | localhost) base="http://127.0.0.1:$PORT" ;;
:: | ::1) base="http://[::1]:$PORT" ;;
*) base="http://$HOST:$PORT" ;;
esac
deadline=$((SECONDS + 120))
until curl -fsS -o /dev/null "$base/ready" 2>/dev/null; do
    for pid_name in "$server_pid:server" "$worker_pid:worker"; do
        if ! kill -0 "${pid_name%%:*}" 2>/dev/null; then
            tail -n 5 "$LOG_DIR/${pid_name##*:}.log" >&2 || true
            die "the ${pid_name##*:} exited at start (log above)"
        fi
    done
    ((SECONDS < deadline)) || die "the server was not ready within 120s (see $LOG_DIR/server.log)"
    sleep 0.5
done

cat <<EOF

Ready on $base (PostgreSQL: job store, Redis: queue). With the development keys (API_KEYS unset):

  # sync prediction
  curl -s -XPOST $base/predict -H 'X-API-Key: dev-key' -H 'content-type: application/json' \\
       -d '{"model":"echo","version":"v1","data":"hello"}'
  # async job, run by the worker
  curl -s -XPOST $base/predict/async -H 'X-API-Key: dev-key' -H 'content-type: application/json' \\
       -d '{"model":"echo","version":"v1","data":"hi"}'
  # its status and result (use the job_id printed above)
  curl -s $base/predict/async/JOB_ID -H 'X-API-Key: dev-key'

Logs: tail -f $LOG_DIR/server.log $LOG_DIR/worker.log
Ctrl-C stops the server and the worker (PostgreSQL and Redis keep running).

EOF

# Until Ctrl-C, or until one of them exits on its own (then the other is stopped too).
while kill -0 "$server_pid" 2>/dev/null && kill -0 "$worker_pid" 2>/dev/null; do
    sleep 1 &
    wait $! || true
done
# Ctrl-C in a terminal signals the whole foreground group: the server and the worker then stop
# cleanly on their own (status 0). Anything else is an error worth reporting.
failed=0
for name in server worker; do
    pid_var="${name}_pid"
    pid="${!pid_var}"
    kill -0 "$pid" 2>/dev/null && continue
    status=0
    wait "$pid" 2>/dev/null || status=$?
    if [[ $status != 0 ]]; then
        echo "error: the $name exited with status $status (see $LOG_DIR/$name.log)" >&2
        failed=1
    fi
done
exit "$failed"
