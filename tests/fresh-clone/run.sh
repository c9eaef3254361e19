#!/usr/bin/env bash
# The README's run command on a fresh clone, as a new user types it:
#
#   tests/fresh-clone/run.sh
#
# Clones the committed HEAD of this checkout into a temp dir (what CI sees: uncommitted changes
# do not count), links this checkout's ONNX Runtime library (scripts/install-onnxruntime.sh
# must have run here), then runs exactly `cargo run --release -- serve` in the clone with a
# clean environment (no .env, no services, no settings but two free ports), waits for /ready,
# sends the README's iris prediction with the development key, sends SIGTERM and requires exit
# status 0. The build goes to target/fresh-clone of this checkout, so a re-run is incremental.
#
# FRESH_CLONE_READY_TIMEOUT_S (default 1800) bounds build + start: a cold release build of the
# tree on 2 cores takes minutes. FRESH_CLONE_KEEP_TEMP=1 keeps the clone and the server's logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

ready_timeout_s=${FRESH_CLONE_READY_TIMEOUT_S:-1800}
started=$SECONDS

fail() {
    echo "FAIL: fresh clone: $*" >&2
    exit 1
}

[[ -e onnxruntime/libonnxruntime.so ]] ||
    fail "onnxruntime/libonnxruntime.so is missing here: run scripts/install-onnxruntime.sh first"

tmp=$(mktemp -d)
server_pid=""
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ ${FRESH_CLONE_KEEP_TEMP:-0} == 1 ]]; then
        echo "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

head=$(git rev-parse HEAD)
echo "== git clone (HEAD $head) into $tmp/clone"
git clone --quiet --no-checkout "$root" "$tmp/clone"
git -C "$tmp/clone" checkout --quiet --detach "$head"
# The library the install script put here (possibly itself a link); the clone's copy of the
# script would download the same pinned wheel again.
ln -s "$(readlink -f "$root/onnxruntime")" "$tmp/clone/onnxruntime"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
grpc_port=$(free_port)

echo "== cargo run --release -- serve (PORT=$port GRPC_PORT=$grpc_port, CARGO_TARGET_DIR=target/fresh-clone)"
# `env -i`: none of the caller's settings (ENV, API_KEYS, DATABASE_URL, REDIS_URL, LOG_*) leak
# in; only what finds the toolchain. Two free ports so a server already on 8000 does not matter.
(
    cd "$tmp/clone"
    exec env -i \
        PATH="$PATH" HOME="$HOME" \
        ${CARGO_HOME:+CARGO_HOME="$CARGO_HOME"} ${RUSTUP_HOME:+RUSTUP_HOME="$RUSTUP_HOME"} \
        CARGO_TARGET_DIR="$root/target/fresh-clone" \
        PORT="$port" GRPC_PORT="$grpc_port" \
        cargo run --release -- serve
) >"$tmp/stdout" 2>"$tmp/stderr" &
server_pid=$!

deadline=$((SECONDS + ready_timeout_s))
until curl -fsS -o /dev/null "http://127.0.0.1:$port/ready" 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        tail -n 40 "$tmp/stderr" >&2
        fail "cargo run --release -- serve exited before /ready answered 200"
    fi
    if ((SECONDS >= deadline)); then
        tail -n 40 "$tmp/stderr" >&2
        fail "/ready did not answer 200 within ${ready_timeout_s}s"
    fi
    sleep 1
done
ready_after=$((SECONDS - started))
echo "ready after ${ready_after}s (clone, build and start)"

echo "== POST /predict (the README's iris example, X-API-Key: dev-key)"
response=$(curl -sS -w '\n%{http_code}' -XPOST "http://127.0.0.1:$port/predict" \
    -H 'X-API-Key: dev-key' -H 'content-type: application/json' \
    -d '{"model":"iris","data":[5.1,3.5,1.4,0.2]}')
code=${response##*$'\n'}
body=${response%$'\n'*}
echo "$code $body"
[[ $code == 200 ]] || fail "POST /predict answered $code: $body"
[[ $body == *'"job_id"'* && $body == *'"model":"iris"'* ]] || fail "unexpected /predict body: $body"

echo "== SIGTERM"
# `cargo run` execs the binary on Unix, so this pid is the server itself.
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
if ((status != 0)); then
    tail -n 40 "$tmp/stderr" >&2
    fail "the server exited with status $status after SIGTERM"
fi
if grep -q '"level":"ERROR"\|ERROR' "$tmp/stderr"; then
    grep 'ERROR' "$tmp/stderr" >&2
    fail "the server logged an error"
fi
echo "ok: fresh clone: cargo run --release -- serve served a prediction and exited 0 on SIGTERM ($((SECONDS - started))s in all)"
