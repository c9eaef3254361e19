#!/usr/bin/env bash
# dev.sh's argument and environment handling, through `--dry-run` (it prints its plan and
# starts nothing, so this needs no PostgreSQL, Redis, Docker or build). Each case runs a copy
# of dev.sh in its own temp folder, so the checkout's .env is neither read nor written.
#
#   tests/dev/test_dev_sh.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"

failures=0
cases=0
tmp_root=$(mktemp -d -t dev-sh-test-XXXXXX)
trap 'rm -rf "$tmp_root"' EXIT

# run_dev [VAR=value ...] -- ARGS...: dev.sh in a fresh folder (with .env.example and,
# when ENV_FILE is set, a .env holding it); sets $out (stdout and stderr), $rc and $dir.
run_dev() {
    local vars=()
    while [[ $1 != -- ]]; do
        vars+=("$1")
        shift
    done
    shift
    dir=$(mktemp -d "$tmp_root/case-XXXXXX")
    cp "$repo/dev.sh" "$repo/.env.example" "$dir/"
    if [[ -n "${ENV_FILE:-}" ]]; then
        printf '%s\n' "$ENV_FILE" >"$dir/.env"
    fi
    rc=0
    out=$(env -u DATABASE_URL -u REDIS_URL -u CARGO_TARGET_DIR "${vars[@]}" \
        bash "$dir/dev.sh" "$@" 2>&1) || rc=$?
}

check() { # check DESCRIPTION CONDITION...
    local description=$1
    shift
    cases=$((cases + 1))
    if "$@"; then
        printf 'ok   %s\n' "$description"
    else
        printf 'FAIL %s\n--- output (exit %s) ---\n%s\n---\n' "$description" "$rc" "$out"
        failures=$((failures + 1))
    fi
}
has() { grep -qF -- "$1" <<<"$out"; }
lacks() { ! grep -qF -- "$1" <<<"$out"; }

run_dev -- --help
check "--help exits 0 and documents --dry-run and --write-env" \
    eval '[[ $rc == 0 ]] && has --dry-run && has --write-env'

run_dev -- --frobnicate
check "an unknown argument exits 2 and names it" \
    eval '[[ $rc == 2 ]] && has "unknown argument: --frobnicate"'

run_dev -- --dry-run
check "without DATABASE_URL: the local database inference_dev, created if missing" \
    eval '[[ $rc == 0 ]] && has "postgres://postgres@127.0.0.1:5432/inference_dev" && has "created if missing"'
check "--dry-run starts nothing and says so" has "nothing started"
check "no .env is written without --write-env" eval '[[ ! -e $dir/.env ]]'
check "the default build is 'cargo build --release' into target/release" \
    eval 'has "binary: target/release/inference-engine (built by '\''cargo build --release'\''"'

run_dev DATABASE_URL=postgres://app:s3cret@db.internal:5432/jobs -- --dry-run
check "DATABASE_URL from the environment is used as it is" \
    eval '[[ $rc == 0 ]] && has "postgres://app:***@db.internal:5432/jobs" && has "from the environment"'
check "... and no inference_dev database is created" \
    eval 'lacks inference_dev && has "no database created"'
check "... and its password is not printed" lacks s3cret

ENV_FILE='DATABASE_URL="postgres://me@127.0.0.1:5432/mine"' run_dev -- --dry-run
check "DATABASE_URL from .env is used when the environment has none" \
    eval 'has "postgres://me@127.0.0.1:5432/mine" && has "from .env" && lacks inference_dev'

ENV_FILE='DATABASE_URL=postgres://me@127.0.0.1:5432/mine' \
    run_dev DATABASE_URL=postgres://env@127.0.0.1:5432/wins -- --dry-run
check "the environment wins over .env" \
    eval 'has "postgres://env@127.0.0.1:5432/wins" && lacks /mine'

run_dev -- --dry-run --no-build
check "--no-build uses the binary as it is" has "(--no-build: as it is)"

run_dev CARGO_TARGET_DIR=/tmp/elsewhere -- --dry-run
check "CARGO_TARGET_DIR moves the binary" has "binary: /tmp/elsewhere/release/inference-engine"

run_dev -- --dry-run --write-env
check "--write-env --dry-run says it would write .env and writes nothing" \
    eval 'has "will be created from .env.example" && [[ ! -e $dir/.env ]]'

ENV_FILE='LOG_LEVEL=debug' run_dev -- --dry-run --write-env
check "an existing .env is kept and said to be loaded" \
    eval 'has ".env: loaded by the engine" && [[ $(cat "$dir/.env") == LOG_LEVEL=debug ]]'

echo
echo "dev.sh: $((cases - failures)) of $cases checks passed"
((failures == 0))
