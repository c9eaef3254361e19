#!/usr/bin/env bash
# v2_grpc: Open Inference Protocol gRPC ModelInfer (raw_input_contents, one 784-value FP32 row
# per request) on the demo MLP, against the engine and against the same model served by
# MLServer (scikit-learn runtime, parallel_workers 0), one after the other in one run, from the
# same load generator (loadgen grpc-infer, C concurrent clients). Prints the ratio. See
# bench/README.md.
#
# Usage: bench/v2_grpc.sh [--duration 10] [--concurrency 64] [--warmup 3] [--no-build]
# Env:   BENCH_KEEP_TMP=1 keeps the temp dir.
set -euo pipefail
BENCH_NAME=v2_grpc.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '8,9s/^# \{0,1\}//p' "$0"
}

SCENARIO=v2_grpc
DURATION=10
CONCURRENCY=64
WARMUP=3
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
        --concurrency) CONCURRENCY="${2:?--concurrency needs a value}"; shift 2 ;;
        --warmup) WARMUP="${2:?--warmup needs a value}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HEALTH_DEADLINE_S=60
STOP_DEADLINE_S=45

require_tools curl python3 cargo
release_build "$BUILD" loadgen inference-engine-cli
LOADGEN="$(release_bin loadgen)"
ENGINE_BIN="$(release_bin inference-engine)"
bench_start_temp
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
echo "==> scenario $SCENARIO: $CONCURRENCY clients, ${DURATION}s (warm-up ${WARMUP}s); temp dir $TMP"

# load NAME URL MODEL INPUT OUTPUTS [KEY]: loadgen grpc-infer, output kept in $TMP/NAME.out.
load() {
    local name="$1" url="$2" model="$3" input="$4" outputs="$5" key="${6:-}"
    local args=(grpc-infer --url "$url" --model "$model" --version v1 --input "$input"
        --features 784 --outputs "$outputs" --concurrency "$CONCURRENCY" --connections 4
        --duration "$DURATION" --warmup "$WARMUP")
    [[ -n "$key" ]] && args+=(--key "$key")
    echo "==> [$name] loadgen ${args[*]}"
    if ! "$LOADGEN" "${args[@]}" 2>&1 | tee "$TMP/$name.out"; then
        FAILURES+=("$name: loadgen reported errors")
    fi
}
result() { # result NAME KEY
    sed -n "s/^LOADGEN_RESULT.* $2=\([^ ]*\).*$/\1/p; s/^LOADGEN_RESULT $2=\([^ ]*\).*$/\1/p" "$TMP/$1.out" | head -n1
}

# --- engine: release build, the repository's demo models ---------------------------------------
HTTP_PORT="$(free_port)"
GRPC_PORT="$(free_port)"
(
    cd "$TMP" # no stray .env, engine.toml or data/ directory from the repo
    exec env -u API_KEYS -u ENGINE_CONFIG ENV=development LOG_FORMAT=json LOG_LEVEL=warn \
        SQLITE_DB_PATH="$TMP/jobs.db" MODELS_DIR="$ROOT/models" GRPC_PORT="$GRPC_PORT" \
        "$ENGINE_BIN" serve --host 127.0.0.1 --port "$HTTP_PORT"
) >"$TMP/engine.stdout" 2>"$TMP/engine.stderr" &
SERVER_PID=$!
wait_healthy engine "$HTTP_PORT"
deadline=$((SECONDS + HEALTH_DEADLINE_S))
until curl -fsS -o /dev/null "http://127.0.0.1:$HTTP_PORT/ready"; do
    ((SECONDS < deadline)) || die "engine not ready after ${HEALTH_DEADLINE_S}s"
    sleep 0.1
done
load engine "http://127.0.0.1:$GRPC_PORT" mlp input label,probabilities dev-key
stop_server engine

# --- MLServer: the same MLP (retrained identically, checked against the references) -----------
tests/v2/mlserver_bench.sh >"$TMP/mlserver.out" 2>"$TMP/mlserver.stderr" &
SERVER_PID=$!
deadline=$((SECONDS + 300)) # the first run creates MLServer's venv
until grep -q '^MLSERVER_READY' "$TMP/mlserver.out" 2>/dev/null; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "MLServer exited during startup; see $TMP/mlserver.stderr"
    ((SECONDS < deadline)) || die "MLServer not ready after 300s; see $TMP/mlserver.stderr"
    sleep 0.2
done
MLSERVER_GRPC="$(sed -n 's/^MLSERVER_READY.* grpc=\([^ ]*\).*$/\1/p' "$TMP/mlserver.out")"
load mlserver "http://$MLSERVER_GRPC" mlp input-0 predict,predict_proba
stop_server mlserver

# --- summary ------------------------------------------------------------------------------------
ENGINE_RPS="$(result engine requests_per_s)"
MLSERVER_RPS="$(result mlserver requests_per_s)"
RATIO="$(awk -v a="$ENGINE_RPS" -v b="$MLSERVER_RPS" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }')"
echo
echo "== $SCENARIO summary ($CONCURRENCY concurrent clients, ${DURATION}s, raw contents, 1 row of 784 FP32)"
printf '%-28s %12s %10s %10s %8s\n' "server" "req/s" "p50 ms" "p99 ms" "errors"
for name in engine mlserver; do
    printf '%-28s %12s %10s %10s %8s\n' "$name" "$(result "$name" requests_per_s)" \
        "$(result "$name" p50_ms)" "$(result "$name" p99_ms)" "$(result "$name" errors)"
done
echo "ratio engine / MLServer: $RATIO   (goal >= 20)"
echo "load average at start: $LOAD_AT_START, at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
if ((${#FAILURES[@]} > 0)); then
    for failure in "${FAILURES[@]}"; do echo "FAIL: $failure" >&2; done
    exit 1
fi
echo "PASS"
