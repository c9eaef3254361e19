#!/usr/bin/env bash
# predict_onnx: POST /predict on the demo MLP (models/mlp/v1, 784 -> 512 -> 512 -> 10) with
# dynamic batching off and on, and the same model run in-process by tract in a tight loop at
# batch 1 and at the manifest's max_batch_size, all in one run. Prints the ratios. See
# bench/README.md.
#
# Usage: bench/predict_onnx.sh [--duration 10s] [--connections 64] [--threads 2] [--warmup 3s]
#                              [--no-build]
# Env:   ENGINE_LOG_LEVEL  engine LOG_LEVEL (default info); BENCH_KEEP_TMP=1 keeps the temp dir.
set -euo pipefail
BENCH_NAME=predict_onnx.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '7,10s/^# \{0,1\}//p' "$0"
}

SCENARIO=predict_onnx
DURATION=10s
CONNECTIONS=64
THREADS=2
WARMUP=3s
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?--connections needs a value}"; shift 2 ;;
        --threads) THREADS="${2:?--threads needs a value}"; shift 2 ;;
        --warmup) WARMUP="${2:?--warmup needs a value}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LUA="$ROOT/bench/predict_onnx.lua"
MODEL_DIR="$ROOT/models/mlp/v1"
ENGINE_LOG_LEVEL="${ENGINE_LOG_LEVEL:-info}"
HEALTH_DEADLINE_S=60
STOP_DEADLINE_S=45
DURATION_S="${DURATION%s}"

require_tools wrk curl python3 cargo
[[ -f "$MODEL_DIR/model.onnx" ]] || die "missing $MODEL_DIR/model.onnx (python3 scripts/gen_models.py)"
MAX_BATCH="$(sed -n 's/^max_batch_size *= *\([0-9]*\).*$/\1/p' "$MODEL_DIR/model.toml")"
[[ -n "$MAX_BATCH" ]] || die "$MODEL_DIR/model.toml has no [batching] max_batch_size"

release_build "$BUILD" tract-ref inference-engine-cli
TRACT_BIN="$(release_bin tract-ref)"
ENGINE_BIN="$(release_bin inference-engine)"

bench_start_temp
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
echo "==> scenario $SCENARIO: -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP); temp dir $TMP"

# --- the model repository: the same ONNX file with batching on and off ---------------------
REPO="$TMP/models"
mkdir -p "$REPO/mlp_batched/v1" "$REPO/mlp_unbatched/v1"
cp "$MODEL_DIR/model.onnx" "$MODEL_DIR/model.toml" "$REPO/mlp_batched/v1/"
cp "$MODEL_DIR/model.onnx" "$REPO/mlp_unbatched/v1/"
# Everything before the [batching] table.
sed '/^\[batching\]/,$d' "$MODEL_DIR/model.toml" >"$REPO/mlp_unbatched/v1/model.toml"

# --- reference: tract in-process --------------------------------------------------------------
for batch in 1 "$MAX_BATCH"; do
    echo "==> [tract-ref] batch $batch, 1 thread, ${DURATION_S}s"
    "$TRACT_BIN" "$MODEL_DIR/model.onnx" 784 --batch "$batch" --threads 1 --seconds "$DURATION_S" \
        | tee "$TMP/tract.b$batch.out"
done

# --- engine -----------------------------------------------------------------------------------
ENGINE_PORT="$(free_port)"
(
    cd "$TMP" # no stray .env, engine.toml or data/ directory from the repo
    exec env -u API_KEYS -u ENGINE_CONFIG ENV=development LOG_FORMAT=json \
        LOG_LEVEL="$ENGINE_LOG_LEVEL" SQLITE_DB_PATH="$TMP/jobs.db" MODELS_DIR="$REPO" \
        MAX_BODY_BYTES=1000000 \
        "$ENGINE_BIN" serve --host 127.0.0.1 --port "$ENGINE_PORT"
) >"$TMP/engine.stdout" 2>"$TMP/engine.stderr" &
SERVER_PID=$!
wait_healthy engine "$ENGINE_PORT"
echo "==> engine up on port $ENGINE_PORT (pid $SERVER_PID, LOG_LEVEL=$ENGINE_LOG_LEVEL)"
for model in mlp_unbatched mlp_batched; do
    export BENCH_MODEL="$model"
    run_wrk "$model" warmup "$ENGINE_PORT" "$WARMUP"
    run_wrk "$model" measure "$ENGINE_PORT" "$DURATION"
done
stop_server engine

# --- summary ----------------------------------------------------------------------------------
tract_ips() {
    sed -n 's/^TRACT_REF.* items_per_s=\([0-9.]*\).*$/\1/p' "$TMP/tract.b$1.out"
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
}
REF1="$(tract_ips 1)"
REFB="$(tract_ips "$MAX_BATCH")"
OFF="$(field "$TMP/mlp_unbatched.measure.wrk" rps)"
ON="$(field "$TMP/mlp_batched.measure.wrk" rps)"
NON2XX=0
SOCKET=0
for model in mlp_unbatched mlp_batched; do
    for phase in warmup measure; do
        NON2XX=$((NON2XX + $(field "$TMP/$model.$phase.wrk" non2xx)))
        SOCKET=$((SOCKET + $(socket_errors "$TMP/$model.$phase.wrk")))
    done
done

echo
echo "== $SCENARIO summary (wrk -t$THREADS -c$CONNECTIONS -d$DURATION, engine LOG_LEVEL=$ENGINE_LOG_LEVEL)"
printf '%-34s %12s %10s %10s\n' "run" "items/s" "p50 ms" "p99 ms"
printf '%-34s %12s %10s %10s\n' "tract in-process, batch 1" "$REF1" "-" "-"
printf '%-34s %12s %10s %10s\n' "tract in-process, batch $MAX_BATCH" "$REFB" "-" "-"
printf '%-34s %12s %10s %10s\n' "engine, batching off" "$OFF" \
    "$(field "$TMP/mlp_unbatched.measure.wrk" p50_ms)" "$(field "$TMP/mlp_unbatched.measure.wrk" p99_ms)"
printf '%-34s %12s %10s %10s\n' "engine, batching on (max $MAX_BATCH)" "$ON" \
    "$(field "$TMP/mlp_batched.measure.wrk" p50_ms)" "$(field "$TMP/mlp_batched.measure.wrk" p99_ms)"
echo "ratio batching on / off:                      $(ratio "$ON" "$OFF")   (goal >= 2)"
echo "ratio batching on / tract batch $MAX_BATCH:          $(ratio "$ON" "$REFB")   (goal >= 0.5)"
echo "ratio batching off / tract batch 1:            $(ratio "$OFF" "$REF1")"
echo "non-2xx responses: $NON2XX, socket errors: $SOCKET (warm-ups included)"
echo "load average at start: $LOAD_AT_START, at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"

((NON2XX == 0)) || FAILURES+=("the engine answered $NON2XX non-2xx responses")
((SOCKET == 0)) || FAILURES+=("$SOCKET socket errors/timeouts")
if ((${#FAILURES[@]} > 0)); then
    for failure in "${FAILURES[@]}"; do echo "FAIL: $failure" >&2; done
    exit 1
fi
echo "PASS"
