#!/usr/bin/env bash
# The OpenAPI document against the real server: is `/openapi.json` a valid OpenAPI document
# (openapi-spec-validator), and does the server keep to it (schemathesis: zero 5xx, zero
# responses outside the documented statuses, content types, headers and schemas)?
#
#   tests/openapi/run.sh
#
# Creates or reuses the pinned venv target/openapi-venv/tools (tests/openapi/requirements.txt;
# recreated when that file changes), builds the engine once (cargo build -p
# inference-engine-cli, binary target/debug/inference-engine) unless ENGINE_BIN=PATH names the
# binary to test (`.ci/run` passes the one `cargo test` built), starts it on free loopback ports
# with a temp SQLite file and a copy of the demo models iris:v1 and iris:v2, and stops it with
# SIGTERM at the end. OPENAPI_EXAMPLES (default 40) bounds the generated cases per operation;
# OPENAPI_KEEP_TEMP=1 keeps the temp folder (engine log, schemathesis report).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/openapi

# The venv helper of tests/v2, rooted here instead.
V2_VENV_ROOT="$PWD/target/openapi-venv"
# shellcheck source=tests/v2/venv.sh
source tests/v2/venv.sh

echo "== venv"
venv=$(ensure_venv tools "$here/requirements.txt")

echo "== build"
if [[ -n "${ENGINE_BIN:-}" ]]; then
    echo "ENGINE_BIN=$ENGINE_BIN: not building"
else
    cargo build -p inference-engine-cli
fi
ENGINE_BIN="${ENGINE_BIN:-$PWD/target/debug/inference-engine}"
if [[ ! -x "$ENGINE_BIN" ]]; then
    echo "error: $ENGINE_BIN was not built" >&2
    exit 1
fi

work=$(mktemp -d -t openapi-engine-XXXXXX)
engine_pid=
stop_engine() {
    if [[ -n "$engine_pid" ]] && kill -0 "$engine_pid" 2>/dev/null; then
        kill -TERM "$engine_pid" 2>/dev/null || true
        # The engine drains and exits 0 within SHUTDOWN_TIMEOUT_S; SIGKILL if it did not.
        local deadline=$((SECONDS + 30))
        while kill -0 "$engine_pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
        kill -KILL "$engine_pid" 2>/dev/null || true
        wait "$engine_pid" 2>/dev/null || true
    fi
    engine_pid=
}
cleanup() {
    stop_engine
    if [[ "${OPENAPI_KEEP_TEMP:-0}" == 1 ]]; then
        echo "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# Free loopback ports: bind port 0, read it, close (as tests/v2/engine.py does).
free_port() {
    "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
http_port=$(free_port)
grpc_port=$(free_port)
while [[ $grpc_port == "$http_port" ]]; do grpc_port=$(free_port); done

mkdir -p "$work/models"
cp -r models/iris "$work/models/iris"
: >"$work/engine.toml"
admin_key=openapi-admin-key-0123456789
echo "== engine on 127.0.0.1:$http_port"
# A clean environment: no `.env` or engine.toml of the checkout applies (the working directory
# is the temp folder). BUILTIN_MODELS=echo leaves out `sleep`, which holds a request for up to
# a minute by design and would only test the request timeout of the fuzzer.
env -i PATH="$PATH" \
    GRPC_PORT="$grpc_port" \
    SQLITE_DB_PATH="$work/jobs.db" \
    MODELS_DIR="$work/models" \
    ENGINE_CONFIG="$work/engine.toml" \
    BUILTIN_MODELS=echo \
    API_KEYS="$admin_key:ops:admin" \
    LOG_FORMAT=json \
    ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$PWD/onnxruntime/libonnxruntime.so}" \
    "$ENGINE_BIN" serve --host 127.0.0.1 --port "$http_port" \
    >"$work/engine.log" 2>&1 </dev/null &
engine_pid=$!
base="http://127.0.0.1:$http_port"
deadline=$((SECONDS + 60))
until curl -fsS "$base/ready" >/dev/null 2>&1; do
    if ! kill -0 "$engine_pid" 2>/dev/null; then
        echo "error: the engine exited before it was ready:" >&2
        tail -n 40 "$work/engine.log" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "error: the engine was not ready within 60 s:" >&2
        tail -n 40 "$work/engine.log" >&2
        exit 1
    fi
    sleep 0.2
done

status=0
echo
echo "== openapi-spec-validator"
curl -fsS "$base/openapi.json" -o "$work/openapi.json"
if "$venv/bin/openapi-spec-validator" "$work/openapi.json"; then
    validator=passed
else
    validator=FAILED
    status=1
fi

echo
echo "== schemathesis (${OPENAPI_EXAMPLES:-40} examples per operation)"
# Every check, with the admin key (every scope). The stateful phase needs OpenAPI links,
# which the document does not declare, so it would have nothing to run.
if "$venv/bin/schemathesis" --no-color run "$base/openapi.json" \
    --checks all \
    --phases examples,coverage,fuzzing \
    --max-examples "${OPENAPI_EXAMPLES:-40}" \
    --seed 27 \
    --workers 2 \
    --request-timeout 30 \
    --header "X-API-Key: $admin_key" \
    --report junit --report-dir "$work/report"; then
    fuzzing=passed
else
    fuzzing=FAILED
    status=1
fi

stop_engine
echo
echo "== tests/openapi summary"
echo "  openapi-spec-validator: $validator"
echo "  schemathesis: $fuzzing"
exit "$status"
