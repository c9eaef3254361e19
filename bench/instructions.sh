#!/usr/bin/env bash
# Counts the CPU instructions the engine executes per POST /predict (echo), per thread role,
# under valgrind's callgrind. Unlike req/s on a shared VM, the count repeats to within a few
# tenths of a percent, so it shows changes of 1-2 % that wrk cannot (BENCHMARKS.md). It counts
# user-space instructions only: system calls, context switches and cache misses are not in it.
#
# Usage: bench/instructions.sh [--requests N] [--no-build] [ENGINE_BINARY...]
#        With several binaries (e.g. a saved copy of an earlier build), runs each in turn.
# Env:   ENGINE_LOG_LEVEL  engine LOG_LEVEL (default info: the access log is part of the count)
set -euo pipefail
BENCH_NAME=instructions.sh
SCENARIO=instructions
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REQUESTS=2000
WARMUP_REQUESTS=400
CONNECTIONS=4
BUILD=1
BINARIES=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --requests) REQUESTS="${2:?--requests needs a value}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) BINARIES+=("$(realpath "$1")"); shift ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ENGINE_LOG_LEVEL="${ENGINE_LOG_LEVEL:-info}"
require_tools valgrind callgrind_control curl python3 cargo
if ((${#BINARIES[@]} == 0)); then
    release_build "$BUILD" inference-engine-cli
    BINARIES=("$(release_bin inference-engine)")
fi
bench_start_temp

# Sends `count` predict requests over `connections` keep-alive connections; exits non-zero on
# any non-200 answer.
send_requests() {
    python3 - "$1" "$2" "$3" <<'EOF'
import http.client, sys, threading
count, connections, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
body = b'{"model":"echo","version":"v1","data":"hello"}'
headers = {"Content-Type": "application/json", "X-API-Key": "dev-key"}
failures = []
def send(n):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(n):
        connection.request("POST", "/predict", body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            failures.append(response.status)
threads = [threading.Thread(target=send, args=(count // connections,)) for _ in range(connections)]
for thread in threads: thread.start()
for thread in threads: thread.join()
sys.exit(f"{len(failures)} non-200 answers, e.g. {failures[:3]}" if failures else 0)
EOF
}

# The role of the thread a callgrind output file profiled, from the code it ran.
thread_role() {
    if grep -q 'sqlite::writer::run' "$1"; then echo sqlite-writer
    elif grep -q 'observe::executor_inflight' "$1"; then echo executor
    elif grep -q 'multi_thread::worker::run' "$1"; then echo runtime
    elif grep -q 'sqlx_sqlite' "$1"; then echo sqlx-worker
    else echo other
    fi
}

count_binary() {
    local binary="$1" run="$TMP/run-$2"
    mkdir -p "$run/models"
    printf '[rate_limits]\npredict = { rate = 1000000000, burst = 1000000000 }\n' >"$run/engine.toml"
    local port
    port="$(free_port)"
    (
        cd "$run"
        exec env -u API_KEYS -u ENGINE_CONFIG ENV=development LOG_FORMAT=json \
            LOG_LEVEL="$ENGINE_LOG_LEVEL" SQLITE_DB_PATH="$run/jobs.db" MODELS_DIR="$run/models" \
            valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$run/callgrind.out" \
            "$binary" serve --host 127.0.0.1 --port "$port"
    ) >"$TMP/engine.stdout" 2>"$TMP/engine.stderr" &
    SERVER_PID=$!
    HEALTH_DEADLINE_S=120
    wait_healthy engine "$port"
    send_requests "$WARMUP_REQUESTS" "$CONNECTIONS" "$port"
    callgrind_control --zero "$SERVER_PID" >/dev/null 2>&1
    send_requests "$REQUESTS" "$CONNECTIONS" "$port"
    callgrind_control --dump "$SERVER_PID" >/dev/null 2>&1
    STOP_DEADLINE_S=60
    stop_server engine
    echo "== $binary: instructions per request ($REQUESTS requests, $CONNECTIONS connections)"
    local file total role
    for file in "$run"/callgrind.out.1-*; do
        total="$(sed -n 's/^totals: //p; s/^summary: //p' "$file" | head -1)"
        [[ -n "$total" && "$total" != 0 ]] || continue
        echo "$(thread_role "$file") $total"
    done | awk -v n="$REQUESTS" '
        { by_role[$1] += $2; all += $2 }
        END {
            for (role in by_role) printf "  %-14s %9.0f\n", role, by_role[role] / n
            printf "  %-14s %9.0f\n", "total", all / n
        }'
}

index=0
for binary in "${BINARIES[@]}"; do
    index=$((index + 1))
    count_binary "$binary" "$index"
done
if ((${#FAILURES[@]} > 0)); then
    for failure in "${FAILURES[@]}"; do echo "FAIL: $failure" >&2; done
    exit 1
fi
