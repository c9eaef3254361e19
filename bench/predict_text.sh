#!/usr/bin/env bash
# predict_text: text classification from raw strings, end to end, against the Python way in the
# same run (see bench/README.md):
#   1. the Python reference (bench/text/text_ref.py): Hugging Face `tokenizers` + onnxruntime in
#      one process, batch after batch of --batch texts, one session with intra-op threads =
#      cores (what a Python server's model loop does);
#   2. the engine serving models/text_classifier/v1 (BERT, sequence length 64 after
#      truncation) with batching on (max --batch), POST /predict with one string per request
#      under wrk;
# and prints engine requests/s / Python texts/s.
#
# Usage: bench/predict_text.sh [--duration 10s] [--connections 64] [--threads 2] [--warmup 3s]
#                              [--batch 16] [--no-build]
# Env:   ENGINE_LOG_LEVEL  engine LOG_LEVEL (default info); BENCH_KEEP_TMP=1 keeps the temp dir;
#        ORT_DYLIB_PATH    the ONNX Runtime library (default: onnxruntime/);
#        BENCH_TEXT_PYTHON a python with bench/text/requirements.txt installed (default: a venv
#                          in target/bench-text-venv, created on the first run).
set -euo pipefail
BENCH_NAME=predict_text.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n '12,18s/^# \{0,1\}//p' "$0"
}

SCENARIO=predict_text
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
WARMUP_S="${WARMUP%s}"
CORES="$(nproc)"
MODEL=models/text_classifier/v1
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/onnxruntime/libonnxruntime.so}"
# Longer than 64 tokens, so every request is truncated to exactly 64.
TEXT="The battery lasts for days and the screen is bright, but the speakers are weak and the keyboard feels cheap. The battery lasts for days and the screen is bright, but the speakers are weak and the keyboard feels cheap. The battery lasts for days and the screen is bright."

require_tools wrk curl python3 cargo
[[ -e "$ORT_DYLIB_PATH" ]] || die "no ONNX Runtime at $ORT_DYLIB_PATH (scripts/install-onnxruntime.sh)"
release_build "$BUILD" inference-engine-cli
ENGINE_BIN="$(release_bin inference-engine)"

PYTHON="${BENCH_TEXT_PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    VENV="${CARGO_TARGET_DIR:-$ROOT/target}/bench-text-venv"
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "==> creating $VENV (bench/text/requirements.txt)"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q -r bench/text/requirements.txt
    fi
    PYTHON="$VENV/bin/python"
fi

bench_start_temp
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"
echo "==> scenario $SCENARIO: -t$THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $CORES cores; temp dir $TMP"

REPO="$TMP/models"
mkdir -p "$REPO/text/v1"
cp "$MODEL/model.onnx" "$MODEL/tokenizer.json" "$REPO/text/v1/"
sed -e '/^\[batching\]/,$d' "$MODEL/model.toml" >"$REPO/text/v1/model.toml"
printf '\n[batching]\nmax_batch_size = %d\nmax_delay_ms = 2\n' "$BATCH" >>"$REPO/text/v1/model.toml"
python3 -c 'import json, sys; json.dump({"model": "text", "version": "v1", "data": sys.argv[2]}, open(sys.argv[1], "w"))' \
    "$TMP/text.body.json" "$TEXT"

echo "==> [python] tokenizers + onnxruntime, batch $BATCH, 1 session x $CORES intra-op threads, ${DURATION_S}s"
"$PYTHON" bench/text/text_ref.py "$MODEL" --batch "$BATCH" --threads "$CORES" \
    --seconds "$DURATION_S" --warmup "$WARMUP_S" --text "$TEXT" | tee "$TMP/python.out"

ENGINE_PORT="$(free_port)"
(
    cd "$TMP"
    exec env -u API_KEYS -u ENGINE_CONFIG ENV=development LOG_FORMAT=json \
        LOG_LEVEL="$ENGINE_LOG_LEVEL" SQLITE_DB_PATH="$TMP/jobs.db" MODELS_DIR="$REPO" \
        CPU_EXECUTOR_WORKERS="$CORES" \
        "$ENGINE_BIN" serve --host 127.0.0.1 --port "$ENGINE_PORT"
) >"$TMP/engine.stdout" 2>"$TMP/engine.stderr" &
SERVER_PID=$!
wait_healthy engine "$ENGINE_PORT"
echo "==> engine up on port $ENGINE_PORT (pid $SERVER_PID, LOG_LEVEL=$ENGINE_LOG_LEVEL)"
export BENCH_BODY="$TMP/text.body.json"
run_wrk text warmup "$ENGINE_PORT" "$WARMUP"
run_wrk text measure "$ENGINE_PORT" "$DURATION"
stop_server engine

REF="$(sed -n 's/^TEXT_REF.* items_per_s=\([0-9.]*\).*$/\1/p' "$TMP/python.out")"
TOKENS="$(sed -n 's/^TEXT_REF.* tokens=\([0-9]*\).*$/\1/p' "$TMP/python.out")"
RPS="$(field "$TMP/text.measure.wrk" rps)"
NON2XX=$(($(field "$TMP/text.warmup.wrk" non2xx) + $(field "$TMP/text.measure.wrk" non2xx)))
SOCKET=$(($(socket_errors "$TMP/text.warmup.wrk") + $(socket_errors "$TMP/text.measure.wrk")))
echo
echo "== $SCENARIO summary (wrk -t$THREADS -c$CONNECTIONS -d$DURATION, engine LOG_LEVEL=$ENGINE_LOG_LEVEL, $CORES cores, $TOKENS tokens per text)"
printf '%-60s %12s %10s %10s\n' "run" "texts/s" "p50 ms" "p99 ms"
printf '%-60s %12s %10s %10s\n' "Python tokenizers + onnxruntime, batch $BATCH" "$REF" "-" "-"
printf '%-60s %12s %10s %10s\n' "engine POST /predict, one string each, batching max $BATCH" "$RPS" \
    "$(field "$TMP/text.measure.wrk" p50_ms)" "$(field "$TMP/text.measure.wrk" p99_ms)"
echo "engine / Python: $(awk -v a="$RPS" -v b="$REF" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')   (goal >= 1.0)"
echo "non-2xx responses: $NON2XX, socket errors: $SOCKET (warm-ups included)"
echo "load average at start: $LOAD_AT_START, at end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo n/a)"

((NON2XX == 0)) || FAILURES+=("the engine answered $NON2XX non-2xx responses")
((SOCKET == 0)) || FAILURES+=("$SOCKET socket errors/timeouts")
if ((${#FAILURES[@]} > 0)); then
    for failure in "${FAILURES[@]}"; do echo "FAIL: $failure" >&2; done
    exit 1
fi
echo "PASS"
