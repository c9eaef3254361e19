"""Serve the demo MLP (mlp:v1) in MLServer, for a V2 gRPC throughput comparison with the engine.

Run it with the MLServer venv's python (tests/v2/mlserver_bench.sh does, creating the venv):

    tests/v2/mlserver_bench.sh [--http-port P] [--grpc-port P] [--parallel-workers N]
                               [--duration SECONDS] [--workdir DIR]

It retrains the MLPClassifier exactly as scripts/gen_models.py does (the shared code in
scripts/demo_training.py, via tests/v2/sk_models.py, which refuses a model whose predictions do
not match testdata/expected/mlp-v1.json), saves it with joblib as the MLServer model `mlp`
version `v1`, starts MLServer (127.0.0.1, parallel_workers 0 unless told otherwise, metrics off),
checks one HTTP request against testdata/expected/mlp-v1.json, and then prints one line

    MLSERVER_READY http=127.0.0.1:<port> grpc=127.0.0.1:<port> model=mlp version=v1

(and the same as KEY=value lines) and keeps serving until SIGINT/SIGTERM or --duration, then
stops MLServer and removes its temp folder. A load generator sends ModelInfer to the gRPC address
with one FP32 [N, 784] input (any name; raw_input_contents gives raw_output_contents back) and
asks for the outputs `predict` (INT64 [N, 1]) and/or `predict_proba` (FP64 [N, 10]); with no
outputs named, MLServer computes `predict` only. The engine's mlp:v1 computes both (`label` and
`probabilities`) in one run, so asking MLServer for both is the like-for-like comparison.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sk_models  # noqa: E402
from engine import REPO, MLServer, http_json  # noqa: E402

MODEL = "mlp"
VERSION = "v1"


def sanity_check(ms: MLServer) -> None:
    """One JSON request with the 8-row case of testdata/expected/mlp-v1.json."""
    case = json.loads((REPO / "testdata" / "expected" / "mlp-v1.json").read_text())["cases"][1]
    rows = case["input"]
    body = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [len(rows), 784], "data": rows}],
        "outputs": [{"name": "predict"}],
    }
    status, answer = http_json("POST", ms.url(f"/v2/models/{MODEL}/versions/{VERSION}/infer"), body)
    if status != 200:
        raise SystemExit(f"MLServer answered {status}: {answer}")
    labels = answer["outputs"][0]["data"]
    if labels != case["outputs"]["label"]:
        raise SystemExit(f"MLServer's labels {labels} != expected {case['outputs']['label']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--grpc-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--parallel-workers", type=int, default=0)
    parser.add_argument(
        "--duration", type=float, default=0, help="seconds to serve (default: until signalled)"
    )
    parser.add_argument(
        "--workdir", type=Path, help="model folder (default: a temp dir, removed at exit)"
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="v2-mlserver-bench-"))
    stop = {"now": False}

    def on_signal(signum, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ms = None
    try:
        started = time.monotonic()
        info = sk_models.mlp(workdir, MODEL, VERSION)
        print(
            f"mlp:v1 retrained in {time.monotonic() - started:.1f} s, matches "
            f"testdata/expected/mlp-v1.json (max |dp| {info['max_abs_diff_vs_expected']:.2e})",
            flush=True,
        )
        ms = MLServer(
            workdir,
            [(MODEL, VERSION)],
            http_port=args.http_port or None,
            grpc_port=args.grpc_port or None,
            parallel_workers=args.parallel_workers,
            binary=Path(sys.executable).parent / "mlserver",
        )
        ms.start()
        sanity_check(ms)
        print(f"MLSERVER_HTTP_PORT={ms.http_port}")
        print(f"MLSERVER_GRPC_PORT={ms.grpc_port}")
        print(f"MLSERVER_MODEL={MODEL}")
        print(f"MLSERVER_VERSION={VERSION}")
        print(
            f"MLSERVER_READY http={ms.http_address} grpc={ms.grpc_address} model={MODEL} "
            f"version={VERSION} parallel_workers={args.parallel_workers} log={ms.log_path}",
            flush=True,
        )
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        while not stop["now"] and ms.running():
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        if not ms.running():
            print(f"MLServer exited unexpectedly; see {ms.log_path}", file=sys.stderr)
            return 1
        return 0
    finally:
        if ms is not None:
            ms.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
