#!/usr/bin/env bash
# predict_onnx: ONNX models end to end, all in one run (see bench/README.md):
#   1. bert_tiny (models/bert_tiny/v1) at sequence length 128, batching on, POST /predict under
#      wrk, against ONNX Runtime in-process (bench/ort-ref) at the same batch size with the
#      same sessions and threads as the engine uses; prints the ratio and the engine's own CPU
#      cost per request in µs.
#   2. the demo MLP and 3. a 50-tree forest (testdata/models/forest_digits), each served by the
#      same engine twice, on ONNX Runtime and on tract (runtime = "tract"); prints the ratios.
#
# Usage: bench/predict_onnx.sh [--duration 10s] [--connections 64] [--threads 2] [--warmup 3s]
#                              [--batch 16] [--no-build]
# Env:   ENGINE_LOG_LEVEL  engine LOG_LEVEL (default info); BENCH_KEEP_TMP=1 keeps the temp dir;
#        ORT_DYLIB_PATH    the ONNX Runtime library (default: onnxruntime/, from
#                          scripts/install-onnxruntime.sh).
set -euo pipefail
BENCH_NAME=predict_onnx.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '10,14s/^# \{0,1\}//p' "$0"
}

SCENARIO=predict_onnx
DURATION=10s
CONNECTIONS=64
THREADS=2
WARMUP=3s
BATCH=16
BUILD=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?--connections needs a value}"; shift 2 ;;
        --threads) THREADS="${2:?--threads needs a value}"; shift 2 ;;
        --warmup) WARMUP="${2:?--warmup needs a value}"; shift 2 ;;
        --batch) BATCH="${2:?--batch needs a value}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option $1" ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LUA="$ROOT/bench/predict_onnx.lua"
ENGINE_LOG_LEVEL="${ENGINE_LOG_LEVEL:-info}"
HEALTH_DEADLINE_S=60
STOP_DEADLINE_S=45
DURATION_S="${DURATION%s}"
SEQUENCE=128
CORES="$(nproc)"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/onnxruntime/libonnxruntime.so}"

require_tools wrk curl python3 cargo
[[ -e "$ORT_DYLIB_PATH" ]] || die "no ONNX Runtime at $ORT_DYLIB_PATH (scripts/install-onnxruntime.sh)"
release_build "$BUILD" ort-ref inference-engine-cli
REF_BIN="$(release_bin ort-ref)"
ENGINE_BIN="$(release_bin inference-engine)"

bench_start_temp
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
echo "==> scenario $SCENARIO: -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $CORES cores; temp dir $TMP"

# --- the model repository ---------------------------------------------------------------------
# copy_model SOURCE_DIR NAME RUNTIME BATCHING: SOURCE_DIR's graph as NAME/v1 on RUNTIME, with
# `[batching]` (max BATCHING rows within 2 ms) or without (BATCHING=0).
REPO="$TMP/models"
copy_model() {
    local source="$1" name="$2" runtime="$3" batching="$4"
    mkdir -p "$REPO/$name/v1"
    cp "$source/model.onnx" "$REPO/$name/v1/"
    sed -e '/^\[batching\]/,$d' -e '/^runtime = /d' -e "s/^backend = \"onnx\"$/backend = \"onnx\"\nruntime = \"$runtime\"/" \
        "$source/model.toml" >"$REPO/$name/v1/model.toml"
    if ((batching > 0)); then
        printf '\n[batching]\nmax_batch_size = %d\nmax_delay_ms = 2\n' "$batching" >>"$REPO/$name/v1/model.toml"
    fi
}
copy_model models/bert_tiny/v1 bert onnxruntime "$BATCH"
copy_model models/mlp/v1 mlp_ort onnxruntime 32
copy_model models/mlp/v1 mlp_tract tract 32
copy_model testdata/models/forest_digits/v1 forest_ort onnxruntime 0
copy_model testdata/models/forest_digits/v1 forest_tract tract 0

# --- request bodies (one example each; the models' cost does not depend on the values) ----------
python3 - "$TMP" "$SEQUENCE" <<'EOF'
import json, sys
tmp, sequence = sys.argv[1], int(sys.argv[2])
ids = [1 + (i * 37) % 999 for i in range(sequence)]
bodies = {
    "bert": {"input_ids": ids, "attention_mask": [1] * sequence, "token_type_ids": [0] * sequence},
    "mlp": [round(((i * 7) % 97) / 97.0 - 0.5, 4) for i in range(784)],
    "forest": [float((i * 5) % 17) for i in range(64)],
}
for model, data in bodies.items():
    names = {"bert": ["bert"], "mlp": ["mlp_ort", "mlp_tract"], "forest": ["forest_ort", "forest_tract"]}[model]
    for name in names:
        with open(f"{tmp}/{name}.body.json", "w") as out:
            json.dump({"model": name, "version": "v1", "data": data}, out)
EOF

# --- reference: ONNX Runtime in-process, the engine's layout ------------------------------------
# The engine's cpu pool has one thread per core; each thread runs a session with
# cores / threads intra-op threads (= 1).
SESSIONS="$CORES"
echo "==> [ort-ref] bert, batch $BATCH, $SESSIONS sessions x 1 intra-op thread, ${DURATION_S}s"
"$REF_BIN" models/bert_tiny/v1/model.onnx --batch "$BATCH" --sessions "$SESSIONS" --intra 1 \
    --seconds "$DURATION_S" --dim "sequence=$SEQUENCE" | tee "$TMP/ort-ref.out"

# --- engine -----------------------------------------------------------------------------------
ENGINE_PORT="$(free_port)"
(
    cd "$TMP" # no stray .env, engine.toml or data/ directory from the repo
    exec env -u API_KEYS -u ENGINE_CONFIG ENV=development LOG_FORMAT=json \
        LOG_LEVEL="$ENGINE_LOG_LEVEL" SQLITE_DB_PATH="$TMP/jobs.db" MODELS_DIR="$REPO" \
        CPU_EXECUTOR_WORKERS="$CORES" MAX_BODY_BYTES=1000000 \
        "$ENGINE_BIN" serve --host 127.0.0.1 --port "$ENGINE_PORT"
) >"$TMP/engine.stdout" 2>"$TMP/engine.stderr" &
SERVER_PID=$!
wait_healthy engine "$ENGINE_PORT"
echo "==> engine up on port $ENGINE_PORT (pid $SERVER_PID, LOG_LEVEL=$ENGINE_LOG_LEVEL)"
MODELS=(bert mlp_ort mlp_tract forest_ort forest_tract)
for model in "${MODELS[@]}"; do
    export BENCH_BODY="$TMP/$model.body.json"
    run_wrk "$model" warmup "$ENGINE_PORT" "$WARMUP"
    run_wrk "$model" measure "$ENGINE_PORT" "$DURATION"
done
stop_server engine

# --- summary ----------------------------------------------------------------------------------
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
}
REF="$(sed -n 's/^ORT_REF.* items_per_s=\([0-9.]*\).*$/\1/p' "$TMP/ort-ref.out")"
rps() { field "$TMP/$1.measure.wrk" rps; }
NON2XX=0
SOCKET=0
for model in "${MODELS[@]}"; do
    for phase in warmup measure; do
        NON2XX=$((NON2XX + $(field "$TMP/$model.$phase.wrk" non2xx)))
        SOCKET=$((SOCKET + $(socket_errors "$TMP/$model.$phase.wrk")))
    done
done
# Every core is busy in both runs, so an item costs CORES / (items/s) of CPU; the difference is
# what the engine adds per request (HTTP, JSON, batching, the job record; and wrk, which shares
# the cores).
OVERHEAD_US="$(awk -v c="$CORES" -v e="$(rps bert)" -v r="$REF" \
    'BEGIN { if (e > 0 && r > 0) printf "%.0f", 1e6 * c * (1 / e - 1 / r); else print "n/a" }')"

echo
echo "== $SCENARIO summary (wrk -t$THREADS -c$CONNECTIONS -d$DURATION, engine LOG_LEVEL=$ENGINE_LOG_LEVEL, $CORES cores)"
printf '%-52s %12s %10s %10s\n' "run" "items/s" "p50 ms" "p99 ms"
printf '%-52s %12s %10s %10s\n' "bert seq $SEQUENCE: ONNX Runtime in-process, batch $BATCH" "$REF" "-" "-"
for model in "${MODELS[@]}"; do
    printf '%-52s %12s %10s %10s\n' "engine /predict: $model" "$(rps "$model")" \
        "$(field "$TMP/$model.measure.wrk" p50_ms)" "$(field "$TMP/$model.measure.wrk" p99_ms)"
done
echo "bert: engine (batching on, max $BATCH) / ONNX Runtime in-process batch $BATCH: $(ratio "$(rps bert)" "$REF")   (goal >= 0.8)"
echo "bert: engine overhead per request: ${OVERHEAD_US} µs of CPU"
echo "mlp (batching on, max 32): engine on ONNX Runtime / on tract:       $(ratio "$(rps mlp_ort)" "$(rps mlp_tract)")"
echo "forest (50 trees, unbatched): engine on ONNX Runtime / on tract:    $(ratio "$(rps forest_ort)" "$(rps forest_tract)")"
echo "non-2xx responses: $NON2XX, socket errors: $SOCKET (warm-ups included)"
echo "load average at start: $LOAD_AT_START, at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"

((NON2XX == 0)) || FAILURES+=("the engine answered $NON2XX non-2xx responses")
((SOCKET == 0)) || FAILURES+=("$SOCKET socket errors/timeouts")
if ((${#FAILURES[@]} > 0)); then
    for failure in "${FAILURES[@]}"; do echo "FAIL: $failure" >&2; done
    exit 1
fi
echo "PASS"
