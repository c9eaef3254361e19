#!/usr/bin/env bash
# The async_jobs scenario: submits N async echo jobs to `inference-engine serve` and waits until
# every one is terminal, run through Redis by `inference-engine worker` processes into
# PostgreSQL; prints jobs/s end to end and submit-to-done latency. See bench/README.md.
#
# Usage: bench/async_jobs.sh [--jobs 10000] [--workers 2] [--concurrency 64] [--deadline 120]
#                            [--poll-ms 200] [--loadgen-threads 1] [--log-level info] [--no-build]
# Env:   ENGINE_LOG_LEVEL  LOG_LEVEL of serve and workers (default info; --log-level wins)
#        WORKER_CONCURRENCY, WORKER_BATCH, CPU_EXECUTOR_WORKERS and the engine's other settings
#        are passed through if set (API_KEYS is always unset so the dev key `dev-key` works).
#        BENCH_PG_URL     PostgreSQL server, no database (default postgres://postgres@127.0.0.1:5432)
#        BENCH_REDIS_URL  Redis (default redis://127.0.0.1:6379)
#        BENCH_KEEP_TMP=1 keep the temp dir, the database and the Redis keys even when the run passes.
set -euo pipefail

usage() {
    sed -n '6,15s/^# \{0,1\}//p' "$0"
}

BENCH_NAME=async_jobs.sh
# die, free_port, require_tools, release_build, release_bin (not its cleanup: this scenario runs
# several processes and has its own).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

JOBS=10000
WORKERS=2
CONCURRENCY=64
DEADLINE_S=120
POLL_MS=200
LOADGEN_THREADS=1
LOG_LEVEL_SETTING="${ENGINE_LOG_LEVEL:-info}"
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --jobs) JOBS="${2:?--jobs needs a value}"; shift 2 ;;
        --workers) WORKERS="${2:?--workers needs a value}"; shift 2 ;;
        --concurrency) CONCURRENCY="${2:?--concurrency needs a value}"; shift 2 ;;
        --deadline) DEADLINE_S="${2:?--deadline needs a value}"; shift 2 ;;
        --poll-ms) POLL_MS="${2:?--poll-ms needs a value}"; shift 2 ;;
        --loadgen-threads) LOADGEN_THREADS="${2:?--loadgen-threads needs a value}"; shift 2 ;;
        --log-level) LOG_LEVEL_SETTING="${2:?--log-level needs a value}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument $1" ;;
    esac
done
for number in JOBS WORKERS CONCURRENCY DEADLINE_S POLL_MS LOADGEN_THREADS; do
    [[ "${!number}" =~ ^[1-9][0-9]*$ ]] || die "$number must be a positive integer, not ${!number}"
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PG_URL="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}"
PG_URL="${PG_URL%/}"
REDIS_URL_BENCH="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
HEALTH_DEADLINE_S=30
STOP_DEADLINE_S=45 # above the engine's default SHUTDOWN_TIMEOUT_S (30)
POLL_SLEEP="$(awk -v ms="$POLL_MS" 'BEGIN { printf "%.3f", ms / 1000 }')"
# Workers say "worker started" at info; at a quieter level, keep that one line for the start-up
# check (the worker logs nothing per job at info).
case "$LOG_LEVEL_SETTING" in
    warn|error|off) WORKER_LOG_LEVEL="$LOG_LEVEL_SETTING,inference_engine_worker=info" ;;
    *) WORKER_LOG_LEVEL="$LOG_LEVEL_SETTING" ;;
esac

require_tools curl python3 psql redis-cli awk
[[ $BUILD == 0 ]] || require_tools cargo
release_build "$BUILD" inference-engine-cli loadgen
ENGINE_BIN="$(release_bin inference-engine)"
LOADGEN_BIN="$(release_bin loadgen)"

psql "$PG_URL/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1 || die "PostgreSQL does not answer at $PG_URL"
[[ "$(redis-cli -u "$REDIS_URL_BENCH" ping 2>/dev/null)" == PONG ]] || die "Redis does not answer at $REDIS_URL_BENCH"

TAG="$(date -u +%Y%m%d%H%M%S)_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
DB_NAME="ie_bench_$TAG"
KEY_PREFIX="ie_bench_$TAG:"
DB_URL="$PG_URL/$DB_NAME"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/bench-async_jobs.XXXXXX")"
SERVE_PID=""
WORKER_PIDS=()
DB_CREATED=0
FAILURES=()

# Stops whatever is still running (the normal path has stopped it already), then removes the
# database, the Redis keys and the temp dir unless the run failed or BENCH_KEEP_TMP=1.
cleanup() {
    local rc=$?
    local pid
    for pid in "$SERVE_PID" "${WORKER_PIDS[@]}"; do
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$SERVE_PID" "${WORKER_PIDS[@]}"; do
        [[ -n "$pid" ]] || continue
        local deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ "${BENCH_KEEP_TMP:-0}" == 1 ]]; then
        echo "async_jobs.sh: kept database $DB_NAME, Redis keys ${KEY_PREFIX}* and $TMP" >&2
    else
        if [[ $DB_CREATED == 1 ]]; then
            psql "$PG_URL/postgres" -Atqc "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null ||
                echo "async_jobs.sh: could not drop database $DB_NAME" >&2
        fi
        redis-cli -u "$REDIS_URL_BENCH" --scan --pattern "${KEY_PREFIX}*" |
            xargs -r redis-cli -u "$REDIS_URL_BENCH" del >/dev/null ||
            echo "async_jobs.sh: could not delete the Redis keys ${KEY_PREFIX}*" >&2
        if [[ $rc == 0 ]]; then
            rm -rf "$TMP"
        else
            echo "async_jobs.sh: logs and job ids kept in $TMP" >&2
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sql() {
    psql "$DB_URL" -X -At -v ON_ERROR_STOP=1 -q "$@"
}

# check_alive NAME PID: fails the run if PID is gone.
check_alive() {
    local name="$1" pid="$2"
    if ! kill -0 "$pid" 2>/dev/null; then
        local rc=0
        wait "$pid" || rc=$?
        die "$name exited during startup (status $rc); see $TMP/$name.stdout and $TMP/$name.stderr"
    fi
}

# start_engine NAME LOG_LEVEL ARGS...: starts the engine binary in the temp dir (no stray .env),
# with this run's database and Redis prefix; sets STARTED_PID.
start_engine() {
    local name="$1" level="$2"
    shift 2
    (
        cd "$TMP"
        exec env -u API_KEYS ENV=development LOG_FORMAT=json LOG_LEVEL="$level" \
            DATABASE_URL="$DB_URL" REDIS_URL="$REDIS_URL_BENCH" REDIS_KEY_PREFIX="$KEY_PREFIX" \
            "$ENGINE_BIN" "$@"
    ) >"$TMP/$name.stdout" 2>"$TMP/$name.stderr" &
    STARTED_PID=$!
}

# stop_all: SIGTERM to serve and every worker at once, then waits for each with a deadline; a
# non-zero status or a missed deadline is a failure.
STOP_STATUS=()
stop_all() {
    local names=(serve) pids=("$SERVE_PID") i
    for i in "${!WORKER_PIDS[@]}"; do
        names+=("worker-$((i + 1))")
        pids+=("${WORKER_PIDS[$i]}")
    done
    for i in "${!pids[@]}"; do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
    local deadline=$((SECONDS + STOP_DEADLINE_S))
    for i in "${!pids[@]}"; do
        local pid="${pids[$i]}" rc=0
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                kill -KILL "$pid" 2>/dev/null || true
                FAILURES+=("${names[$i]} did not exit within ${STOP_DEADLINE_S}s of SIGTERM (killed)")
                break
            fi
            sleep 0.1
        done
        wait "$pid" || rc=$?
        [[ $rc == 0 ]] || FAILURES+=("${names[$i]} exited with status $rc after SIGTERM")
        STOP_STATUS+=("${names[$i]}=$rc")
    done
    SERVE_PID=""
    WORKER_PIDS=()
}

# CPU accounting from /proc, in clock ticks: utime + stime of each process (fields 14 and 15 of
# /proc/PID/stat, counted after the parenthesised command name, which may hold spaces).
proc_ticks() {
    local total=0 pid ticks
    for pid in "$@"; do
        ticks="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')" || ticks=0
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}

# PostgreSQL: every process of the server (backends, WAL writer, ...) plus what the postmaster
# collected from backends that exited (its cutime + cstime).
postgres_ticks() {
    local pids postmaster children
    mapfile -t pids < <(pgrep -x postgres || true)
    postmaster="$(pgrep -o -x postgres || true)"
    children=0
    if [[ -n "$postmaster" ]]; then
        children="$(sed 's/^.*) //' "/proc/$postmaster/stat" 2>/dev/null | awk '{ print $14 + $15 }')" || children=0
    fi
    echo $(($(proc_ticks "${pids[@]}") + ${children:-0}))
}

# "PID TICKS" for every PostgreSQL process, to tell this run's backends from the rest later.
postgres_pid_ticks() {
    local pid ticks
    for pid in $(pgrep -x postgres || true); do
        ticks="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')" || continue
        [[ -n "$ticks" ]] && echo "$pid $ticks"
    done
}

redis_ticks() {
    local pids
    mapfile -t pids < <(pgrep -x redis-server || true)
    proc_ticks "${pids[@]}"
}

# busy and total ticks of the whole machine (first line of /proc/stat).
machine_ticks() {
    awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; total = busy + $5 + $6; print busy, total; exit }' /proc/stat
}

builds_running() {
    local count
    count="$(pgrep -c -x 'rustc|cargo|cc|cc1|ld|ld.lld|clippy-driver' 2>/dev/null || true)"
    echo "${count:-0}"
}

# result FILE KEY: a value from loadgen's LOADGEN_RESULT line.
result() {
    local value
    value="$(sed -n "s/^LOADGEN_RESULT.* $2=\([^ ]*\).*$/\1/p" "$1")"
    [[ -n "$value" ]] || die "no $2 in the LOADGEN_RESULT line of $1"
    echo "$value"
}

# --- set-up ----------------------------------------------------------------------------------
echo "==> scenario async_jobs: $JOBS jobs, $WORKERS workers, loadgen -c$CONCURRENCY; temp dir $TMP"
echo "    database $DB_NAME, Redis prefix $KEY_PREFIX, LOG_LEVEL=$LOG_LEVEL_SETTING" \
    "(workers: $WORKER_LOG_LEVEL), WORKER_CONCURRENCY=${WORKER_CONCURRENCY:-default}," \
    "WORKER_BATCH=${WORKER_BATCH:-default}, CPU_EXECUTOR_WORKERS=${CPU_EXECUTOR_WORKERS:-default}"
psql "$PG_URL/postgres" -X -Atqc "CREATE DATABASE \"$DB_NAME\"" >/dev/null
DB_CREATED=1

# The server first: it migrates the fresh database before it answers /health, so the workers
# never race it to the schema.
PORT="$(free_port)"
start_engine serve "$LOG_LEVEL_SETTING" serve --host 127.0.0.1 --port "$PORT"
SERVE_PID=$STARTED_PID
deadline=$((SECONDS + HEALTH_DEADLINE_S))
until curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/health" 2>/dev/null; do
    check_alive serve "$SERVE_PID"
    ((SECONDS < deadline)) || die "serve not healthy on port $PORT after ${HEALTH_DEADLINE_S}s; see $TMP/serve.stdout"
    sleep 0.1
done
echo "==> serve up on port $PORT (pid $SERVE_PID)"

for ((i = 1; i <= WORKERS; i++)); do
    start_engine "worker-$i" "$WORKER_LOG_LEVEL" worker
    WORKER_PIDS+=("$STARTED_PID")
done
deadline=$((SECONDS + HEALTH_DEADLINE_S))
for ((i = 1; i <= WORKERS; i++)); do
    until grep -q '"message":"worker started"' "$TMP/worker-$i.stdout" 2>/dev/null; do
        check_alive "worker-$i" "${WORKER_PIDS[$((i - 1))]}"
        ((SECONDS < deadline)) || die "worker-$i did not log \"worker started\" within ${HEALTH_DEADLINE_S}s"
        sleep 0.1
    done
done
WORKER_LOOPS="$(sed -n 's/.*"message":"worker started".*"loops":\([0-9]*\).*/\1/p;s/.*"loops":\([0-9]*\).*"message":"worker started".*/\1/p' "$TMP/worker-1.stdout" | head -1)"
WORKER_BATCH_SEEN="$(sed -n 's/.*"message":"worker started".*"batch":\([0-9]*\).*/\1/p;s/.*"batch":\([0-9]*\).*"message":"worker started".*/\1/p' "$TMP/worker-1.stdout" | head -1)"
echo "==> $WORKERS workers started (pids ${WORKER_PIDS[*]}; loops ${WORKER_LOOPS:-?}, batch ${WORKER_BATCH_SEEN:-?} each)"

# --- load ------------------------------------------------------------------------------------
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
BUILDS_AT_START="$(builds_running)"
read -r MACHINE_BUSY0 MACHINE_TOTAL0 < <(machine_ticks)
# WAL written and WAL flushes (cluster-wide: other databases' work counts too).
wal_snapshot() {
    psql "$PG_URL/postgres" -X -At -q -F ' ' -c \
        "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, wal_sync FROM pg_stat_wal" 2>/dev/null || echo "0 0"
}
read -r WAL_BYTES0 WAL_SYNC0 < <(wal_snapshot)
SERVE_T0="$(proc_ticks "$SERVE_PID")"
WORKERS_T0="$(proc_ticks "${WORKER_PIDS[@]}")"
POSTGRES_T0="$(postgres_ticks)"
postgres_pid_ticks >"$TMP/postgres-ticks.start"
REDIS_T0="$(redis_ticks)"
START_NS="$(date +%s%N)"

echo "==> loadgen --threads $LOADGEN_THREADS async-submit --jobs $JOBS --concurrency $CONCURRENCY"
LOADGEN_RC=0
LOADGEN_CMD=("$LOADGEN_BIN" --threads "$LOADGEN_THREADS" async-submit --url "http://127.0.0.1:$PORT"
    --key dev-key --jobs "$JOBS" --concurrency "$CONCURRENCY" --ids-out "$TMP/ids.txt")
if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -f 'LOADGEN_CPU user=%U sys=%S' -o "$TMP/loadgen.time" \
        "${LOADGEN_CMD[@]}" 2>"$TMP/loadgen.stderr" || LOADGEN_RC=$?
else
    "${LOADGEN_CMD[@]}" 2>"$TMP/loadgen.stderr" || LOADGEN_RC=$?
fi
SUBMITTED_NS="$(date +%s%N)"
grep -v '^LOADGEN_RESULT' "$TMP/loadgen.stderr" | sed 's/^/    /' || true
grep -q '^LOADGEN_RESULT' "$TMP/loadgen.stderr" ||
    die "loadgen exited with status $LOADGEN_RC without a result; see $TMP/loadgen.stderr"
ACCEPTED="$(result "$TMP/loadgen.stderr" accepted)"

# --- wait until every job is terminal ---------------------------------------------------------
# Rows are committed before the 202, so every accepted job is in the table by now; the run is
# over when none is pending or running.
echo "==> waiting until every job is terminal (poll every ${POLL_MS} ms, deadline ${DEADLINE_S} s)"
deadline=$((SECONDS + DEADLINE_S))
next_report=$((SECONDS + 5))
POLLS=0
while true; do
    POLLS=$((POLLS + 1))
    IFS='|' read -r ROWS UNFINISHED < <(sql -c \
        "SELECT count(*), count(*) FILTER (WHERE status IN ('pending', 'running')) FROM jobs") || true
    [[ "$UNFINISHED" =~ ^[0-9]+$ ]] || die "cannot count the unfinished jobs in $DB_NAME"
    ((UNFINISHED == 0)) && break
    if ((SECONDS >= deadline)); then
        FAILURES+=("$UNFINISHED of $ROWS jobs still pending or running after the ${DEADLINE_S}s deadline")
        break
    fi
    if ((SECONDS >= next_report)); then
        echo "    $UNFINISHED of $ROWS jobs pending or running"
        next_report=$((SECONDS + 5))
    fi
    sleep "$POLL_SLEEP"
done
DONE_NS="$(date +%s%N)"
read -r MACHINE_BUSY1 MACHINE_TOTAL1 < <(machine_ticks)
SERVE_T1="$(proc_ticks "$SERVE_PID")"
WORKERS_T1="$(proc_ticks "${WORKER_PIDS[@]}")"
POSTGRES_T1="$(postgres_ticks)"
postgres_pid_ticks >"$TMP/postgres-ticks.end"
# The backends serving this run's database (serve's and the workers' pools; a backend that
# came and went within the run is missed and counted with the rest).
sql -c "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()" \
    >"$TMP/postgres-backends" || true
REDIS_T1="$(redis_ticks)"
LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"
BUILDS_AT_END="$(builds_running)"

echo "==> stopping serve and workers (SIGTERM)"
stop_all
echo "    exit statuses: ${STOP_STATUS[*]}"
# After the stop: backends flush their statistics when they exit.
read -r WAL_BYTES1 WAL_SYNC1 < <(wal_snapshot)
IFS='|' read -r DB_XACTS DB_ROLLBACKS DB_INSERTED DB_UPDATED < <(sql -c \
    "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated FROM pg_stat_database WHERE datname = current_database()") || true

# --- figures from the job store --------------------------------------------------------------
sql -c "CREATE TABLE bench_submitted (id uuid)"
sql -c "\\copy bench_submitted FROM '$TMP/ids.txt'"
# One key=value per line. Latencies in ms; percentiles are nearest-rank (percentile_disc).
sql >"$TMP/figures.txt" <<'EOF'
WITH t AS (
    SELECT status, mode, attempts,
           extract(epoch FROM finished_at - created_at) * 1000 AS total_ms,
           extract(epoch FROM started_at - created_at) * 1000 AS wait_ms,
           extract(epoch FROM finished_at - started_at) * 1000 AS run_ms,
           created_at, finished_at
    FROM jobs
)
SELECT concat_ws(E'\n',
    'rows=' || count(*),
    'succeeded=' || count(*) FILTER (WHERE status = 'succeeded'),
    'finished=' || count(finished_at),
    'async_rows=' || count(*) FILTER (WHERE mode = 'async'),
    'retried=' || count(*) FILTER (WHERE attempts > 1),
    'max_attempts=' || coalesce(max(attempts), 0),
    'span_s=' || coalesce(round(extract(epoch FROM max(finished_at) - min(created_at))::numeric, 3), 0),
    'submit_span_s=' || coalesce(round(extract(epoch FROM max(created_at) - min(created_at))::numeric, 3), 0),
    'p50_ms=' || coalesce(round((percentile_disc(0.50) WITHIN GROUP (ORDER BY total_ms))::numeric, 1), 0),
    'p99_ms=' || coalesce(round((percentile_disc(0.99) WITHIN GROUP (ORDER BY total_ms))::numeric, 1), 0),
    'max_ms=' || coalesce(round(max(total_ms)::numeric, 1), 0),
    'wait_p50_ms=' || coalesce(round((percentile_disc(0.50) WITHIN GROUP (ORDER BY wait_ms))::numeric, 1), 0),
    'wait_p99_ms=' || coalesce(round((percentile_disc(0.99) WITHIN GROUP (ORDER BY wait_ms))::numeric, 1), 0),
    'run_p50_ms=' || coalesce(round((percentile_disc(0.50) WITHIN GROUP (ORDER BY run_ms))::numeric, 1), 0),
    'run_p99_ms=' || coalesce(round((percentile_disc(0.99) WITHIN GROUP (ORDER BY run_ms))::numeric, 1), 0)
) FROM t;
SELECT 'statuses=' || coalesce(string_agg(status || '=' || n, ',' ORDER BY status), 'none')
FROM (SELECT status, count(*) AS n FROM jobs GROUP BY status) AS s;
SELECT 'distinct_ids=' || count(DISTINCT id) FROM jobs;
SELECT 'submitted_ids=' || count(*) FROM bench_submitted;
SELECT 'submitted_distinct=' || count(DISTINCT id) FROM bench_submitted;
SELECT 'missing=' || count(*) FROM bench_submitted s WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = s.id);
SELECT 'extra=' || count(*) FROM jobs j WHERE NOT EXISTS (SELECT 1 FROM bench_submitted s WHERE s.id = j.id);
EOF
figure() {
    local value
    value="$(sed -n "s/^$1=//p" "$TMP/figures.txt")"
    [[ -n "$value" ]] || die "no $1 in $TMP/figures.txt"
    echo "$value"
}
ROWS="$(figure rows)"
SUCCEEDED="$(figure succeeded)"
SPAN_S="$(figure span_s)"
FINISHED="$(figure finished)"
JOBS_PER_S="$(awk -v n="$FINISHED" -v s="$SPAN_S" 'BEGIN { if (s > 0) printf "%.1f", n / s; else print 0 }')"
MISSING="$(figure missing)"
EXTRA="$(figure extra)"
if ((SUCCEEDED != ROWS)); then
    sql -c "\\copy (SELECT id, status, attempts, error_type, error_message, created_at, started_at, finished_at FROM jobs WHERE status <> 'succeeded' ORDER BY created_at) TO '$TMP/not_succeeded.csv' CSV HEADER"
fi

# --- CPU during the run ----------------------------------------------------------------------
CLK_TCK="$(getconf CLK_TCK)"
WINDOW_S="$(awk -v a="$START_NS" -v b="$DONE_NS" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
SUBMIT_WALL_S="$(awk -v a="$START_NS" -v b="$SUBMITTED_NS" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
LOADGEN_TICKS=0
if [[ -f "$TMP/loadgen.time" ]]; then
    LOADGEN_TICKS="$(sed -n 's/^LOADGEN_CPU user=\([0-9.]*\) sys=\([0-9.]*\)$/\1 \2/p' "$TMP/loadgen.time" |
        awk -v hz="$CLK_TCK" '{ printf "%d", ($1 + $2) * hz }')"
fi
cpu_row() { # NAME TICKS: CPU seconds, % of one core over the window, ms of CPU per job
    awk -v name="$1" -v t="$2" -v hz="$CLK_TCK" -v w="$WINDOW_S" -v n="$ROWS" 'BEGIN {
        s = t / hz; printf "    %-10s %8.2f s %7.0f%% %9.3f ms/job\n", name, s, (w > 0 ? 100 * s / w : 0), (n > 0 ? 1000 * s / n : 0) }'
}
cpu_ms() { # TICKS: ms of CPU per job
    awk -v t="$1" -v hz="$CLK_TCK" -v n="$ROWS" 'BEGIN { printf "%.3f", (n > 0 ? 1000 * t / hz / n : 0) }'
}
SERVE_TICKS=$((SERVE_T1 - SERVE_T0))
WORKERS_TICKS=$((WORKERS_T1 - WORKERS_T0))
POSTGRES_TICKS=$((POSTGRES_T1 - POSTGRES_T0))
# This run's backends: CPU since the start snapshot (0 for a backend opened during the run).
POSTGRES_RUN_TICKS="$(awk 'FILENAME == ARGV[1] { run[$1] = 1; next }
    FILENAME == ARGV[2] { start[$1] = $2; next }
    ($1 in run) { total += $2 - start[$1] } END { print total + 0 }' \
    "$TMP/postgres-backends" "$TMP/postgres-ticks.start" "$TMP/postgres-ticks.end")"
POSTGRES_REST_TICKS=$((POSTGRES_TICKS - POSTGRES_RUN_TICKS))
REDIS_TICKS=$((REDIS_T1 - REDIS_T0))
MACHINE_BUSY=$((MACHINE_BUSY1 - MACHINE_BUSY0))
MACHINE_TOTAL=$((MACHINE_TOTAL1 - MACHINE_TOTAL0))
OTHER_TICKS=$((MACHINE_BUSY - SERVE_TICKS - WORKERS_TICKS - POSTGRES_TICKS - REDIS_TICKS - LOADGEN_TICKS))

# --- logs ------------------------------------------------------------------------------------
count_level() { # LEVEL FILES...
    local level="$1" total=0 file n
    shift
    for file in "$@"; do
        n="$(grep -c "\"level\":\"$level\"" "$file" || true)"
        total=$((total + n))
    done
    echo "$total"
}
WORKER_STDOUTS=("$TMP"/worker-*.stdout)
WORKER_STDERRS=("$TMP"/worker-*.stderr)
SERVE_WARN="$(count_level WARN "$TMP/serve.stdout")"
SERVE_ERROR="$(count_level ERROR "$TMP/serve.stdout")"
WORKER_WARN="$(count_level WARN "${WORKER_STDOUTS[@]}")"
WORKER_ERROR="$(count_level ERROR "${WORKER_STDOUTS[@]}")"
STDERR_LINES="$(cat "$TMP/serve.stderr" "${WORKER_STDERRS[@]}" | wc -l)"
ACCESS_LINES="$(grep '"request_completed"' "$TMP/serve.stdout" | grep -c '"path":"/predict/async"' || true)"

# --- summary ---------------------------------------------------------------------------------
LG="$TMP/loadgen.stderr"
echo
echo "== async_jobs summary ($JOBS jobs, $WORKERS workers × ${WORKER_LOOPS:-?} loops × batch ${WORKER_BATCH_SEEN:-?}," \
    "loadgen -c$CONCURRENCY, LOG_LEVEL=$LOG_LEVEL_SETTING)"
printf '%-34s %s\n' "submitted (client)" "$(result "$LG" accepted) of $JOBS accepted in $(result "$LG" elapsed_s) s" \
    "" "= $(result "$LG" submit_per_s) submits/s; non-202 $(result "$LG" non202), transport errors $(result "$LG" transport_errors), 202 without id $(result "$LG" bad_bodies)" \
    "submit latency (client)" "p50 $(result "$LG" p50_ms) ms, p99 $(result "$LG" p99_ms) ms, max $(result "$LG" max_ms) ms" \
    "end to end (store)" "$FINISHED jobs in $SPAN_S s (first created_at to last finished_at) = $JOBS_PER_S jobs/s" \
    "created -> finished" "p50 $(figure p50_ms) ms, p99 $(figure p99_ms) ms, max $(figure max_ms) ms" \
    "  created -> started (queue)" "p50 $(figure wait_p50_ms) ms, p99 $(figure wait_p99_ms) ms" \
    "  started -> finished (run)" "p50 $(figure run_p50_ms) ms, p99 $(figure run_p99_ms) ms" \
    "statuses" "$(figure statuses); retried $(figure retried), max attempts $(figure max_attempts)" \
    "ids" "rows $ROWS, distinct $(figure distinct_ids); submitted $(figure submitted_ids) (distinct $(figure submitted_distinct)); missing $MISSING, not submitted $EXTRA" \
    "exit after SIGTERM" "${STOP_STATUS[*]}" \
    "logs" "serve $SERVE_WARN WARN / $SERVE_ERROR ERROR, workers $WORKER_WARN WARN / $WORKER_ERROR ERROR, $STDERR_LINES stderr lines" \
    "access-log lines /predict/async" "$ACCESS_LINES for $(result "$LG" accepted) accepted (info only; the logger is lossy by design)" \
    "wall: submit / until all terminal" "$SUBMIT_WALL_S s / $WINDOW_S s (poll lag ≤ ${POLL_MS} ms)"
echo "CPU from loadgen start until all terminal ($WINDOW_S s wall, $(nproc) cores):"
cpu_row serve "$SERVE_TICKS"
cpu_row "workers" "$WORKERS_TICKS"
cpu_row postgres "$POSTGRES_TICKS"
echo "      of which this run's backends $(awk -v t="$POSTGRES_RUN_TICKS" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }') s," \
    "the rest (WAL writer, checkpointer, autovacuum, other databases) $(awk -v t="$POSTGRES_REST_TICKS" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }') s"
cpu_row redis "$REDIS_TICKS"
cpu_row loadgen "$LOADGEN_TICKS"
cpu_row "other" "$OTHER_TICKS"
awk -v b="$MACHINE_BUSY" -v t="$MACHINE_TOTAL" 'BEGIN { printf "    machine busy %.0f%% of all cores\n", (t > 0 ? 100 * b / t : 0) }'
awk -v x="${DB_XACTS:-0}" -v r="${DB_ROLLBACKS:-0}" -v i="${DB_INSERTED:-0}" -v u="${DB_UPDATED:-0}" -v p="$POLLS" -v n="$ROWS" \
    -v wb="$((WAL_BYTES1 - WAL_BYTES0))" -v ws="$((WAL_SYNC1 - WAL_SYNC0))" 'BEGIN {
    if (n == 0) n = 1
    printf "PostgreSQL, this database over the whole run: %d commits (%d of them polls), %d rollbacks, %d rows inserted, %d updated = %.2f commits, %.2f row updates per job\n", x, p, r, i, u, (x - p) / n, u / n
    printf "PostgreSQL WAL, cluster-wide, over the run: %.1f MB written, %d WAL syncs = %.0f bytes and %.3f syncs per job\n", wb / 1e6, ws, wb / n, ws / n }'
echo "load average at start: $LOAD_AT_START, at end: $LOAD_AT_END; compiler/linker processes at start: $BUILDS_AT_START, at end: $BUILDS_AT_END"
GOAL_MET="$(awk -v r="$JOBS_PER_S" 'BEGIN { print (r >= 3000 ? "met" : "not met") }')"
echo "goal ≥ 3000 jobs/s end to end with zero lost: throughput $GOAL_MET ($JOBS_PER_S jobs/s)"
echo "ASYNC_JOBS_RESULT jobs=$JOBS workers=$WORKERS loops=${WORKER_LOOPS:-?} batch=${WORKER_BATCH_SEEN:-?}" \
    "concurrency=$CONCURRENCY log_level=$LOG_LEVEL_SETTING accepted=$ACCEPTED rows=$ROWS succeeded=$SUCCEEDED" \
    "missing=$MISSING extra=$EXTRA jobs_per_s=$JOBS_PER_S span_s=$SPAN_S submit_per_s=$(result "$LG" submit_per_s)" \
    "p50_ms=$(figure p50_ms) p99_ms=$(figure p99_ms) load_start=${LOAD_AT_START// /,} load_end=${LOAD_AT_END// /,}" \
    "builds_start=$BUILDS_AT_START builds_end=$BUILDS_AT_END" \
    "cpu_ms_per_job=serve:$(cpu_ms "$SERVE_TICKS"),workers:$(cpu_ms "$WORKERS_TICKS"),postgres:$(cpu_ms "$POSTGRES_TICKS"),pg_run_backends:$(cpu_ms "$POSTGRES_RUN_TICKS"),redis:$(cpu_ms "$REDIS_TICKS"),loadgen:$(cpu_ms "$LOADGEN_TICKS"),other:$(cpu_ms "$OTHER_TICKS")" \
    "pg_commits=${DB_XACTS:-0} wal_syncs=$((WAL_SYNC1 - WAL_SYNC0))"

# --- verdict ---------------------------------------------------------------------------------
((LOADGEN_RC == 0)) || FAILURES+=("loadgen exited with status $LOADGEN_RC (submissions not accepted)")
((ACCEPTED == JOBS)) || FAILURES+=("only $ACCEPTED of $JOBS submissions were accepted")
((ROWS == ACCEPTED)) || FAILURES+=("$ROWS job rows for $ACCEPTED accepted submissions")
(($(figure distinct_ids) == ROWS)) || FAILURES+=("duplicate job ids in the store")
(($(figure submitted_distinct) == $(figure submitted_ids))) || FAILURES+=("the engine returned the same job id twice")
((MISSING == 0)) || FAILURES+=("$MISSING accepted job ids are not in the store (lost)")
((EXTRA == 0)) || FAILURES+=("$EXTRA job rows were never returned to the client")
((SUCCEEDED == ROWS)) || FAILURES+=("$((ROWS - SUCCEEDED)) jobs did not succeed ($(figure statuses)); see $TMP/not_succeeded.csv")
(($(figure async_rows) == ROWS)) || FAILURES+=("some job rows are not mode=async")
if ((SERVE_WARN + SERVE_ERROR + WORKER_WARN + WORKER_ERROR > 0)); then
    echo "first WARN/ERROR lines of the logs:"
    grep -m 5 -H -E '"level":"(WARN|ERROR)"' "$TMP/serve.stdout" "${WORKER_STDOUTS[@]}" |
        sed "s|^$TMP/||; s/^/    /" || true
fi
if ((STDERR_LINES > 0)); then
    echo "stderr of serve and workers:"
    tail -n 5 "$TMP/serve.stderr" "${WORKER_STDERRS[@]}" | sed 's/^/    /'
fi

if ((${#FAILURES[@]} > 0)); then
    echo
    for failure in "${FAILURES[@]}"; do echo "FAIL: $failure" >&2; done
    exit 1
fi
echo "PASS"
