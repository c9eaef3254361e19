# Shared helpers of the wrk-driven bench scripts (run.sh, predict_onnx.sh). Sourced, not run.
#
# The sourcing script sets, before calling bench_start_temp and the rest: BENCH_NAME (prefix of messages), ROOT, SCENARIO,
# LUA (the wrk script), THREADS, CONNECTIONS, HEALTH_DEADLINE_S, STOP_DEADLINE_S; and uses the
# globals TMP (the run's temp dir, created here), SERVER_PID (the server being measured) and
# FAILURES (verdict lines).

die() {
    echo "$BENCH_NAME: $*" >&2
    exit 1
}

# require_tools TOOL...: dies naming the first tool that is not installed.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found (apt-get install -y $tool)"
    done
}

# release_build BUILD PACKAGE...: `cargo build --release` of the packages when BUILD is 1.
release_build() {
    local build="$1"
    shift
    if [[ $build == 1 ]]; then
        local packages=()
        local package
        for package in "$@"; do packages+=(-p "$package"); done
        echo "==> cargo build --release ${packages[*]}"
        cargo build --release "${packages[@]}"
    fi
}

# release_bin NAME: the path of a release binary, or dies saying how to get it.
release_bin() {
    local path="${CARGO_TARGET_DIR:-$ROOT/target}/release/$1"
    [[ -x "$path" ]] || die "missing $path (build it, or drop --no-build)"
    echo "$path"
}

SERVER_PID=""
# Servers started besides SERVER_PID (a script that runs two at once); killed on exit.
OTHER_PIDS=()
FAILURES=()
TMP=""

# bench_start_temp: creates the run's temp dir and installs the cleanup traps.
bench_start_temp() {
    TMP="$(mktemp -d "${TMPDIR:-/tmp}/bench-$SCENARIO.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

cleanup() {
    local rc=$? pid
    for pid in "$SERVER_PID" "${OTHER_PIDS[@]}"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            local deadline=$((SECONDS + 10))
            while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ -z "$TMP" ]]; then
        exit "$rc"
    fi
    if [[ $rc == 0 && "${BENCH_KEEP_TMP:-0}" != 1 ]]; then
        rm -rf "$TMP"
    else
        echo "$BENCH_NAME: logs and SQLite files kept in $TMP" >&2
    fi
    exit "$rc"
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_healthy NAME PORT: polls GET /health until 200, the server exits, or the deadline passes.
wait_healthy() {
    local name="$1" port="$2"
    local deadline=$((SECONDS + HEALTH_DEADLINE_S))
    while true; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            local rc=0
            wait "$SERVER_PID" || rc=$?
            SERVER_PID=""
            die "$name exited during startup (status $rc); see $TMP/$name.stderr"
        fi
        if curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null; then
            return 0
        fi
        ((SECONDS < deadline)) || die "$name not healthy on port $port after ${HEALTH_DEADLINE_S}s; see $TMP/$name.stderr"
        sleep 0.1
    done
}

# stop_server NAME: SIGTERM, wait for the exit with a deadline; a non-zero status is a failure.
stop_server() {
    local name="$1" rc=0
    kill -TERM "$SERVER_PID"
    local deadline=$((SECONDS + STOP_DEADLINE_S))
    while kill -0 "$SERVER_PID" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$SERVER_PID" 2>/dev/null || true
            FAILURES+=("$name did not exit within ${STOP_DEADLINE_S}s of SIGTERM (killed)")
            break
        fi
        sleep 0.1
    done
    wait "$SERVER_PID" || rc=$?
    SERVER_PID=""
    if [[ $rc != 0 ]]; then
        FAILURES+=("$name exited with status $rc after SIGTERM")
    fi
    echo "    $name stopped (exit status $rc)"
}

# field FILE KEY: a value from wrk's BENCH_RESULT line (printed by the Lua done()).
field() {
    local value
    value="$(sed -n "s/^BENCH_RESULT.* $2=\([^ ]*\).*$/\1/p" "$1")"
    [[ -n "$value" ]] || die "no $2 in the BENCH_RESULT line of $1"
    echo "$value"
}

# run_wrk NAME PHASE PORT DURATION: runs wrk, keeps its output in $TMP/NAME.PHASE.wrk, and
# checks that the Lua non-2xx count agrees with wrk's own "Non-2xx or 3xx responses" line.
run_wrk() {
    local name="$1" phase="$2" port="$3" duration="$4"
    local out="$TMP/$name.$phase.wrk"
    echo "==> [$name] $phase: wrk -t$THREADS -c$CONNECTIONS -d$duration --latency -s bench/$(basename "$LUA")"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$duration" --latency -s "$LUA" \
        "http://127.0.0.1:$port/predict" >"$out"
    if [[ $phase == measure ]]; then sed 's/^/    /' "$out"; fi
    # A run with nothing measured (no done() line) stops here, not in a later summary.
    field "$out" rps >/dev/null
    local from_wrk
    from_wrk="$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*$/\1/p' "$out")"
    from_wrk="${from_wrk:-0}"
    if [[ "$from_wrk" != "$(field "$out" non2xx)" ]]; then
        die "$name $phase: wrk reports $from_wrk non-2xx responses but the Lua summary $(field "$out" non2xx)"
    fi
}

# ok_count FILE: responses that were not counted as errors (2xx; wrk counts status > 399).
ok_count() {
    echo $(($(field "$1" requests) - $(field "$1" non2xx)))
}

socket_errors() {
    echo $(($(field "$1" connect_errors) + $(field "$1" read_errors) + $(field "$1" write_errors) + $(field "$1" timeouts)))
}

