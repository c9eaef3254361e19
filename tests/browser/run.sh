#!/usr/bin/env bash
# Browser tests of the /playground page: headless Chromium (Debian's `chromium` package, driven
# by playwright-core from npm; no browser download) against a real engine on port 0.
#   tests/browser/run.sh [node --test options…]
# CHROMIUM_PATH overrides /usr/bin/chromium. ENGINE_BIN names an engine binary to test instead
# of building one (`.ci/run` passes the one `cargo test` just built).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
    echo "error: $chromium not found; install it with: apt-get install -y chromium chromium-driver" >&2
    exit 1
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "error: node and npm are needed (Node.js 20.11 or newer)" >&2
    exit 1
fi

if [[ -n "${ENGINE_BIN:-}" ]]; then
    [[ -x "$ENGINE_BIN" ]] || { echo "error: ENGINE_BIN=$ENGINE_BIN is not an executable" >&2; exit 1; }
    echo "== engine: $ENGINE_BIN"
else
    echo "== cargo build -p inference-engine-cli"
    (cd "$root" && cargo build -p inference-engine-cli)
fi

cd "$here"
if [[ ! -d node_modules ]]; then
    echo "== npm ci"
    npm ci --no-audit --no-fund
fi

echo "== node --test"
export CHROMIUM_PATH="$chromium"
exec node --test --test-reporter=spec "$@" playground.test.js
