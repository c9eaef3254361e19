#!/usr/bin/env bash
# Open Inference Protocol (KServe V2) tests with real Python clients and a real MLServer.
#
#   tests/v2/run.sh            # both test scripts
#   tests/v2/run.sh clients    # only test_clients.py (official tritonclient against the engine)
#   tests/v2/run.sh remote     # only test_remote.py (remote_v2 backend against MLServer)
#
# Creates or reuses the pinned venvs under target/v2-venv/ (client: tritonclient; mlserver:
# MLServer + scikit-learn; each recreated when its requirements file changes), builds the engine
# once (cargo build -p inference-engine-cli, binary target/debug/inference-engine), runs the
# scripts and exits non-zero if any of them failed. ENGINE_BIN=PATH tests that binary as it is
# (no build; `.ci/run` passes the one `cargo test` built); V2_SKIP_BUILD=1 uses
# target/debug/inference-engine as it is; V2_KEEP_TEMP=1 to keep the temp folders (engine stderr,
# MLServer log, model folders).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/v2

# shellcheck source=tests/v2/venv.sh
source "$here/venv.sh"

selected=("$@")
if ((${#selected[@]} == 0)); then
    selected=(clients remote)
fi
for name in "${selected[@]}"; do
    case $name in
    clients | remote) ;;
    *)
        echo "usage: $0 [clients] [remote]" >&2
        exit 2
        ;;
    esac
done

echo "== venvs"
client_venv=$(ensure_venv client "$here/requirements-client.txt")
if [[ " ${selected[*]} " == *" remote "* ]]; then
    mlserver_venv=$(ensure_venv mlserver "$here/requirements-mlserver.txt")
    export MLSERVER_BIN="$mlserver_venv/bin/mlserver"
fi

echo "== build"
if [[ -n "${ENGINE_BIN:-}" ]]; then
    echo "ENGINE_BIN=$ENGINE_BIN: not building"
elif [[ "${V2_SKIP_BUILD:-0}" == 1 ]]; then
    echo "V2_SKIP_BUILD=1: not building"
else
    cargo build -p inference-engine-cli
fi
export ENGINE_BIN="${ENGINE_BIN:-$PWD/target/debug/inference-engine}"
if [[ ! -x "$ENGINE_BIN" ]]; then
    echo "error: $ENGINE_BIN was not built" >&2
    exit 1
fi

declare -A outcome=()
status=0
for name in "${selected[@]}"; do
    echo
    echo "== test_$name.py"
    if "$client_venv/bin/python" "$here/test_$name.py"; then
        outcome[$name]=passed
    else
        outcome[$name]=FAILED
        status=1
    fi
done

echo
echo "== tests/v2 summary"
for name in "${selected[@]}"; do
    printf '  test_%s.py: %s\n' "$name" "${outcome[$name]}"
done
exit "$status"
