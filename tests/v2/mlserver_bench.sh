#!/usr/bin/env bash
# The MLServer side of the V2 gRPC benchmark: serves the demo MLP (mlp:v1, retrained exactly as
# scripts/gen_models.py trains it and checked against testdata/expected/mlp-v1.json) in MLServer
# and prints its ports, then serves until SIGINT/SIGTERM (or --duration SECONDS).
#
#   tests/v2/mlserver_bench.sh [--http-port P] [--grpc-port P] [--parallel-workers N] [--duration S]
#
# The line to wait for: MLSERVER_READY http=127.0.0.1:<port> grpc=127.0.0.1:<port> model=mlp version=v1
# (also printed as MLSERVER_HTTP_PORT=…, MLSERVER_GRPC_PORT=… lines). Uses the cached venv
# target/v2-venv/mlserver (created from tests/v2/requirements-mlserver.txt when needed).
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=tests/v2/venv.sh
source tests/v2/venv.sh
venv=$(ensure_venv mlserver tests/v2/requirements-mlserver.txt)
exec "$venv/bin/python" tests/v2/mlserver_bench.py "$@"
