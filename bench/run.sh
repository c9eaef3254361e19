#!/usr/bin/env bash
# Runs a load scenario against the ref-axum reference and against the engine, in the same run,
# and prints the engine/reference throughput ratio. See bench/README.md.
#
# Both servers run side by side and are measured in turns: --rounds rounds of one --duration
# slice each (the order alternates), so that both see the same minutes of this shared VM, whose
# speed drifts by ±15-30 % within a minute; the ratio is the median of the rounds' ratios.
#
# Usage: bench/run.sh [predict_echo] [--rounds 5] [--duration 2s] [--connections 64]
#                     [--threads 2] [--warmup 2s] [--no-build]
#        bench/run.sh async_jobs [options of bench/async_jobs.sh]   (hands over to that script)
# Env:   ENGINE_LOG_LEVEL  engine LOG_LEVEL for the run (default info: one access-log line per
#                          request, written to a file in the temp dir)
#        CPU_EXECUTOR_WORKERS and the engine's other settings are passed through if set
#        (API_KEYS is always unset so the dev key `dev-key` works); so is
#        TOKIO_WORKER_THREADS, to the engine only (ref-axum always runs as built).
#        BENCH_KEEP_TMP=1  keep the temp dir (logs, SQLite file) even when the run passes.
set -euo pipefail
BENCH_NAME=run.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '9,17s/^# \{0,1\}//p' "$0"
}


# async_jobs has its own script (no reference server, no wrk): hand over to it.
if [[ "${1:-}" == async_jobs ]]; then
    shift
    exec "$(dirname "${BASH_SOURCE[0]}")/async_jobs.sh" "$@"
fi

SCENARIO=predict_echo
ROUNDS=5
DURATION=2s
CONNECTIONS=64
THREADS=2
WARMUP=2s
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        predict_echo) SCENARIO="$1"; shift ;;
        --rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
        --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?--connections needs a value}"; shift 2 ;;
        --threads) THREADS="${2:?--threads needs a value}"; shift 2 ;;
        --warmup) WARMUP="${2:?--warmup needs a value}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) usage >&2; die "unknown scenario $1 (available: predict_echo, async_jobs)" ;;
    esac
done

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, not $ROUNDS"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LUA="$ROOT/bench/$SCENARIO.lua"
ENGINE_LOG_LEVEL="${ENGINE_LOG_LEVEL:-info}"
HEALTH_DEADLINE_S=30
STOP_DEADLINE_S=45 # above the engine's default SHUTDOWN_TIMEOUT_S (30)

require_tools wrk curl python3 cargo
[[ -f "$LUA" ]] || die "missing $LUA"
release_build "$BUILD" ref-axum inference-engine-cli
REF_BIN="$(release_bin ref-axum)"
ENGINE_BIN="$(release_bin inference-engine)"

bench_start_temp

LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
echo "==> scenario $SCENARIO: -t$THREADS -c$CONNECTIONS, $ROUNDS rounds of -d$DURATION per server (warm-up $WARMUP); temp dir $TMP"

# --- both servers up ---------------------------------------------------------------------------
REF_PORT="$(free_port)"
# The reference always runs as built: TOKIO_WORKER_THREADS, set to try the engine with fewer
# runtime threads, would change ref-axum's runtime too (it once passed for an engine gain).
env -u TOKIO_WORKER_THREADS "$REF_BIN" --port "$REF_PORT" >"$TMP/ref-axum.stdout" \
    2>"$TMP/ref-axum.stderr" &
SERVER_PID=$!
wait_healthy ref-axum "$REF_PORT"
REF_PID=$SERVER_PID
OTHER_PIDS+=("$REF_PID")
echo "==> ref-axum up on port $REF_PORT (pid $REF_PID)"

ENGINE_PORT="$(free_port)"
ENGINE_DB="$TMP/engine-jobs.db"
# Rate limiting on, with limits no run reaches: the limiter's cost is part of the figure.
cat >"$TMP/engine.toml" <<'TOML'
[rate_limits]
predict = { rate = 1000000000, burst = 1000000000 }
TOML
mkdir -p "$TMP/models"
(
    cd "$TMP" # no stray .env, engine.toml or data/ directory from the repo
    exec env -u API_KEYS -u ENGINE_CONFIG ENV=development GRPC_PORT=off LOG_FORMAT=json \
        LOG_LEVEL="$ENGINE_LOG_LEVEL" SQLITE_DB_PATH="$ENGINE_DB" MODELS_DIR="$TMP/models" \
        "$ENGINE_BIN" serve --host 127.0.0.1 --port "$ENGINE_PORT"
) >"$TMP/engine.stdout" 2>"$TMP/engine.stderr" &
SERVER_PID=$!
wait_healthy engine "$ENGINE_PORT"
ENGINE_PID=$SERVER_PID
echo "==> engine up on port $ENGINE_PORT (pid $ENGINE_PID, LOG_LEVEL=$ENGINE_LOG_LEVEL)"
curl -s -D - -o /dev/null -XPOST "http://127.0.0.1:$ENGINE_PORT/predict" -H 'X-API-Key: dev-key' \
    -H 'content-type: application/json' -d '{"model":"echo","version":"v1","data":1}' |
    grep -qi '^ratelimit-limit:' || FAILURES+=("the engine answered without RateLimit headers: the limiter is off")

# --- measure in turns --------------------------------------------------------------------------
run_wrk ref-axum warmup "$REF_PORT" "$WARMUP"
run_wrk engine warmup "$ENGINE_PORT" "$WARMUP"
# round_ratio ROUND: the engine's req/s over ref-axum's in that round.
round_ratio() {
    awk -v e="$(field "$TMP/engine.round$1.wrk" rps)" -v r="$(field "$TMP/ref-axum.round$1.wrk" rps)" \
        'BEGIN { if (r > 0) printf "%.3f", e / r; else print 0 }'
}
RUNS=(warmup)
RATIOS=()
for round in $(seq 1 "$ROUNDS"); do
    order=(ref-axum engine)
    ((round % 2 == 0)) && order=(engine ref-axum)
    for server in "${order[@]}"; do
        port="$REF_PORT"
        [[ $server == engine ]] && port="$ENGINE_PORT"
        run_wrk "$server" "round$round" "$port" "$DURATION"
    done
    RUNS+=("round$round")
    RATIOS+=("$(round_ratio "$round")")
    printf '    round %d: ref-axum %s req/s, engine %s req/s, ratio %s\n' "$round" \
        "$(field "$TMP/ref-axum.round$round.wrk" rps)" "$(field "$TMP/engine.round$round.wrk" rps)" \
        "${RATIOS[-1]}"
done

SERVER_PID=$REF_PID
stop_server ref-axum
SERVER_PID=$ENGINE_PID
stop_server engine
OTHER_PIDS=()

JOB_ROWS="$(python3 - "$ENGINE_DB" <<'EOF'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
print(con.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
con.close()
EOF
)"
JOB_STATUSES="$(python3 - "$ENGINE_DB" <<'EOF'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
rows = con.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status").fetchall()
print(", ".join(f"{status}={count}" for status, count in rows) or "none")
con.close()
EOF
)"

# --- summary ---------------------------------------------------------------------------------
# median VALUE...: the middle value (the mean of the two middle ones for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# over SERVER KEY: KEY of each measured round of SERVER.
over() {
    local round
    for round in $(seq 1 "$ROUNDS"); do field "$TMP/$1.round$round.wrk" "$2"; done
}
# total SERVER FUNCTION: FUNCTION (ok_count, socket_errors) or a field, summed over every run.
total() {
    local run sum=0 value
    for run in "${RUNS[@]}"; do
        if [[ $2 == ok_count || $2 == socket_errors ]]; then value="$("$2" "$TMP/$1.$run.wrk")"; else value="$(field "$TMP/$1.$run.wrk" "$2")"; fi
        sum=$((sum + value))
    done
    echo "$sum"
}
REF_RPS="$(median $(over ref-axum rps))"
ENG_RPS="$(median $(over engine rps))"
RATIO="$(median "${RATIOS[@]}")"
REF_NON2XX="$(total ref-axum non2xx)"
ENG_NON2XX="$(total engine non2xx)"
REF_SOCKET="$(total ref-axum socket_errors)"
ENG_SOCKET="$(total engine socket_errors)"
ENG_2XX="$(total engine ok_count)"
ENG_RESPONSES="$(total engine requests)"

ENG_WARN="$(grep -c '"level":"WARN"' "$TMP/engine.stdout" || true)"
ENG_ERROR="$(grep -c '"level":"ERROR"' "$TMP/engine.stdout" || true)"
ENG_STDERR_LINES="$(wc -l <"$TMP/engine.stderr")"
# The engine's logger is lossy by design (drops lines rather than block): compare access-log
# lines for /predict with the responses wrk received (only meaningful at LOG_LEVEL=info).
ENG_ACCESS_LINES="$(grep '"request_completed"' "$TMP/engine.stdout" | grep -c '"path":"/predict"' || true)"

echo
echo "== $SCENARIO summary (wrk -t$THREADS -c$CONNECTIONS, $ROUNDS rounds of $DURATION per server, engine LOG_LEVEL=$ENGINE_LOG_LEVEL)"
printf '%-12s %12s %10s %10s %8s %14s\n' "server" "req/s" "p50 ms" "p99 ms" "non-2xx" "socket errors"
printf '%-12s %12s %10s %10s %8s %14s\n' "ref-axum" "$REF_RPS" "$(median $(over ref-axum p50_ms))" \
    "$(median $(over ref-axum p99_ms))" "$REF_NON2XX" "$REF_SOCKET"
printf '%-12s %12s %10s %10s %8s %14s\n' "engine" "$ENG_RPS" "$(median $(over engine p50_ms))" \
    "$(median $(over engine p99_ms))" "$ENG_NON2XX" "$ENG_SOCKET"
echo "(req/s, p50, p99: medians over the rounds)"
echo "ratio engine/reference: $RATIO (median of the rounds' ratios: ${RATIOS[*]})"
echo "engine job rows: $JOB_ROWS ($JOB_STATUSES); engine 2xx responses incl. warm-up: $ENG_2XX"
echo "engine log: $ENG_WARN WARN and $ENG_ERROR ERROR lines on stdout, $ENG_STDERR_LINES lines on stderr"
echo "engine access-log lines for /predict: $ENG_ACCESS_LINES for $ENG_RESPONSES responses received by wrk"
echo "(non-2xx and socket errors include the warm-up runs)"
echo "load average at start: $LOAD_AT_START, at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)" \
    "(other work on the machine skews both servers; compare runs made on a quiet machine)"

# --- verdict ---------------------------------------------------------------------------------
((REF_NON2XX == 0)) || FAILURES+=("ref-axum answered $REF_NON2XX non-2xx responses")
((ENG_NON2XX == 0)) || FAILURES+=("engine answered $ENG_NON2XX non-2xx responses")
((REF_SOCKET == 0)) || FAILURES+=("ref-axum run had $REF_SOCKET socket errors/timeouts")
((ENG_SOCKET == 0)) || FAILURES+=("engine run had $ENG_SOCKET socket errors/timeouts")
((ENG_2XX > 0)) || FAILURES+=("engine answered no 2xx response")
((JOB_ROWS >= ENG_2XX)) ||
    FAILURES+=("engine has $JOB_ROWS job rows for $ENG_2XX 2xx responses: answered requests are missing")
if ((ENG_WARN + ENG_ERROR > 0)); then
    echo "first WARN/ERROR lines of the engine log:"
    grep -m 5 -E '"level":"(WARN|ERROR)"' "$TMP/engine.stdout" | sed 's/^/    /' || true
fi

if ((${#FAILURES[@]} > 0)); then
    echo
    for failure in "${FAILURES[@]}"; do echo "FAIL: $failure" >&2; done
    exit 1
fi
echo "PASS"
