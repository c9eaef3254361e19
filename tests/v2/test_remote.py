"""The engine's `remote_v2` backend against a real MLServer (scikit-learn runtime).

1. Trains iris:v1's classifier (LogisticRegression(max_iter=1000, random_state=0) on sklearn's
   iris, via scripts/demo_training.py) with the MLServer venv's python (tests/v2/sk_models.py),
   saves it with joblib as the MLServer model `iris-sk` version `v1` (parallel_workers 0) and
   starts MLServer on two free ports.
2. Checks MLServer itself with tritonclient (HTTP JSON and gRPC raw): `predict` INT64 [N,1] and
   `predict_proba` FP64 [N,3], consistent between the two protocols and with the engine's ONNX
   iris:v1 answers (the same model).
3. Writes an engine model repository with two `remote_v2` models, `iris-grpc/v1` (protocol
   grpc, input FP64) and `iris-http/v1` (protocol http, input FP32), both asking for `predict`
   and `predict_proba` with `postprocess.kind = "raw"`, starts the engine on it, and checks
   that `POST /predict` answers and V2 infer answers (tritonclient.http, JSON) equal MLServer's
   direct answers for the same input datatype (labels exactly, probabilities within 1e-9).
4. Stops MLServer: the engine's `/predict` must answer 503 with JSON `code` `unavailable`, and
   after that first failure each further request in under 100 ms (the circuit breaker is open).
5. Restarts MLServer on the same ports: within 30 s, polling, the engine answers correctly
   again, without the engine being restarted (same process).

Every check reports on its own and the run ends with `v2 remote: N passed, N failed`; the exit
code is non-zero if any check failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import API_KEY, MLSERVER_PYTHON, REPO, Engine, MLServer, ServerError  # noqa: E402
from v2check import Runner, Skip, expect  # noqa: E402

MLSERVER_MODEL = "iris-sk"
MLSERVER_VERSION = "v1"
IRIS_LABELS = ["setosa", "versicolor", "virginica"]
ROWS = json.loads((REPO / "testdata" / "expected" / "iris-v1.json").read_text())["cases"][1][
    "input"
]
TOLERANCE = 1e-9  # same model, same input datatype: MLServer and the engine must agree exactly
# MLServer's iris-sk is trained again on this machine by the recipe behind models/iris/v1. lbfgs
# stops at tol=1e-4, so on another CPU's BLAS the fit lands slightly elsewhere: 2.8e-4 in
# probabilities on an AMD EPYC against the committed reference made on an Intel Xeon. Labels
# must still match exactly; the engine-vs-MLServer checks (TOLERANCE) are what must be exact.
RETRAINED_TOLERANCE = 1e-3
FAST_MS = 100.0
FAST_REQUESTS = 5
RECOVERY_S = 30.0


def http_headers() -> dict[str, str]:
    # A new dict per call: tritonclient.http writes Inference-Header-Content-Length into it.
    return {"X-API-Key": API_KEY}


OUTPUTS = ("predict", "predict_proba")

# The engine models: name -> (protocol, input datatype); version v1.
REMOTE_MODELS = {"iris-grpc": ("grpc", "FP64"), "iris-http": ("http", "FP32")}
NUMPY = {"FP64": np.float64, "FP32": np.float32}


def manifest(url: str, protocol: str, datatype: str) -> str:
    return f"""backend = "remote_v2"
description = "iris (logistic regression) served by MLServer over {protocol}"

[remote]
url = "{url}"
protocol = "{protocol}"
model = "{MLSERVER_MODEL}"
version = "{MLSERVER_VERSION}"

[[inputs]]
name = "input-0"
datatype = "{datatype}"
shape = [-1, 4]

# MLServer's sklearn runtime: `predict` is INT64 with shape [N, 1] (it adds the trailing 1 to
# 1-D results); `predict_proba` is FP64 [N, classes].
[[outputs]]
name = "predict"
datatype = "INT64"
shape = [-1, 1]

[[outputs]]
name = "predict_proba"
datatype = "FP64"
shape = [-1, 3]

[postprocess]
kind = "raw"
"""


def as_arrays(result) -> dict[str, np.ndarray]:
    """A raw /predict result (one {output: row} map per input row) as {output: [N, ...] array}."""
    expect(
        isinstance(result, list)
        and len(result) == len(ROWS)
        and all(isinstance(r, dict) for r in result),
        f"/predict result is not one map per row: {str(result)[:300]}",
    )
    return {name: np.array([row.get(name) for row in result]) for name in OUTPUTS}


def same(got: dict[str, np.ndarray], want: dict[str, np.ndarray], what: str) -> None:
    g_labels = np.asarray(got["predict"]).reshape(-1)
    w_labels = np.asarray(want["predict"]).reshape(-1)
    expect(
        g_labels.tolist() == w_labels.tolist(),
        f"{what}: predict {g_labels.tolist()} != {w_labels.tolist()}",
    )
    g = np.asarray(got["predict_proba"], dtype=np.float64).reshape(len(ROWS), -1)
    w = np.asarray(want["predict_proba"], dtype=np.float64).reshape(len(ROWS), -1)
    expect(g.shape == w.shape, f"{what}: predict_proba shape {g.shape} != {w.shape}")
    diff = float(np.max(np.abs(g - w)))
    expect(diff <= TOLERANCE, f"{what}: predict_proba differs by {diff:.3e} (> {TOLERANCE:g})")


class Suite:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.mlserver: MLServer | None = None
        self.engine: Engine | None = None
        self.direct: dict[str, dict[str, np.ndarray]] = {}  # input datatype -> MLServer's answer
        self.engine_pid = None
        self.worked: set[str] = set()  # engine models that answered right before the outage

    # -- MLServer ----------------------------------------------------------------------------

    def make_model(self) -> None:
        expect(
            MLSERVER_PYTHON.is_file(),
            f"{MLSERVER_PYTHON} missing: run tests/v2/run.sh (it creates the venv)",
        )
        out = subprocess.run(
            [
                str(MLSERVER_PYTHON),
                str(REPO / "tests" / "v2" / "sk_models.py"),
                "iris",
                str(self.workdir / "mlserver"),
                "--name",
                MLSERVER_MODEL,
                "--version",
                MLSERVER_VERSION,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        expect(
            out.returncode == 0,
            f"sk_models.py iris failed ({out.returncode}):\n{out.stderr[-3000:]}",
        )

    def start_mlserver(self) -> None:
        if not (self.workdir / "mlserver" / MLSERVER_MODEL / "model.joblib").is_file():
            raise Skip("no model was written")
        self.mlserver = MLServer(self.workdir / "mlserver", [(MLSERVER_MODEL, MLSERVER_VERSION)])
        self.mlserver.start()
        print(f"        MLServer: HTTP {self.mlserver.http_port}, gRPC {self.mlserver.grpc_port}")

    def need_mlserver(self) -> MLServer:
        if self.mlserver is None or not self.mlserver.running():
            raise Skip("MLServer is not running")
        return self.mlserver

    def query_http(self, datatype: str) -> dict[str, np.ndarray]:
        ms = self.need_mlserver()
        client = httpclient.InferenceServerClient(url=ms.http_address)
        x = np.asarray(ROWS, dtype=NUMPY[datatype])
        inp = httpclient.InferInput("input-0", list(x.shape), datatype)
        inp.set_data_from_numpy(x, binary_data=False)  # MLServer has no binary tensor extension
        outs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in OUTPUTS]
        r = client.infer(MLSERVER_MODEL, [inp], model_version=MLSERVER_VERSION, outputs=outs)
        return {n: r.as_numpy(n) for n in OUTPUTS}

    def query_grpc(self, datatype: str) -> tuple[dict[str, np.ndarray], object]:
        ms = self.need_mlserver()
        client = grpcclient.InferenceServerClient(url=ms.grpc_address)
        x = np.asarray(ROWS, dtype=NUMPY[datatype])
        inp = grpcclient.InferInput("input-0", list(x.shape), datatype)
        inp.set_data_from_numpy(x)
        outs = [grpcclient.InferRequestedOutput(n) for n in OUTPUTS]
        r = client.infer(MLSERVER_MODEL, [inp], model_version=MLSERVER_VERSION, outputs=outs)
        return {n: r.as_numpy(n) for n in OUTPUTS}, r.get_response()

    def mlserver_direct(self) -> None:
        """MLServer's own answers, over both protocols, for both input datatypes."""
        for datatype in ("FP64", "FP32"):
            via_http = self.query_http(datatype)
            via_grpc, response = self.query_grpc(datatype)
            for name, want_dtype, want_shape in [
                ("predict", np.int64, (len(ROWS), 1)),
                ("predict_proba", np.float64, (len(ROWS), 3)),
            ]:
                for proto, answer in (("http", via_http), ("grpc", via_grpc)):
                    a = answer[name]
                    expect(a is not None, f"MLServer {proto} {datatype}: no {name}")
                    expect(
                        a.dtype == want_dtype and a.shape == want_shape,
                        f"MLServer {proto} {datatype}: {name} is {a.dtype} {a.shape}, "
                        f"expected {np.dtype(want_dtype)} {want_shape}",
                    )
            expect(
                len(response.raw_output_contents) == 2,
                "MLServer did not answer a raw_input_contents request with raw_output_contents",
            )
            same(via_grpc, via_http, f"MLServer gRPC vs HTTP ({datatype})")
            self.direct[datatype] = via_http
        # The same model as the engine's ONNX iris:v1 (whose reference outputs are committed).
        case = json.loads((REPO / "testdata" / "expected" / "iris-v1.json").read_text())["cases"][1]
        p = self.direct["FP32"]["predict_proba"]
        diff = float(np.max(np.abs(p - np.asarray(case["outputs"]["probabilities"]))))
        expect(
            diff <= RETRAINED_TOLERANCE,
            f"MLServer's iris-sk differs from iris:v1's reference by {diff:.3e} (> {RETRAINED_TOLERANCE:g})",
        )
        expect(
            self.direct["FP32"]["predict"].reshape(-1).tolist() == case["outputs"]["label"],
            "MLServer's iris-sk labels differ from iris:v1's reference",
        )

    # -- the engine ----------------------------------------------------------------------------

    def start_engine(self) -> None:
        ms = self.need_mlserver()
        repo = self.workdir / "engine-models"
        for name, (protocol, datatype) in REMOTE_MODELS.items():
            port = ms.grpc_port if protocol == "grpc" else ms.http_port
            folder = repo / name / "v1"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.toml").write_text(
                manifest(f"http://127.0.0.1:{port}", protocol, datatype)
            )
        self.engine = Engine(models_dir=repo)
        # Only the HTTP listener matters here (the remote backend does not need the gRPC server).
        self.engine.start(wait_for=("listening",))
        self.engine_pid = self.engine.proc.pid

    def need_engine(self) -> Engine:
        if self.engine is None or not self.engine.running():
            raise Skip("the engine is not running")
        return self.engine

    def predict(self, model: str, timeout: float = 30.0) -> tuple[int, object, float]:
        engine = self.need_engine()
        started = time.monotonic()
        status, body = engine.predict(model, "v1", ROWS, timeout=timeout)
        return status, body, (time.monotonic() - started) * 1000

    def predict_equals_direct(self, model: str) -> None:
        datatype = REMOTE_MODELS[model][1]
        if datatype not in self.direct:
            raise Skip("MLServer's direct answers failed above")
        status, body, _ = self.predict(model)
        expect(status == 200, f"/predict {model}:v1 answered {status}: {body}")
        same(as_arrays(body.get("result")), self.direct[datatype], f"/predict {model} vs MLServer")
        self.worked.add(model)

    def v2_equals_direct(self, model: str) -> None:
        engine = self.need_engine()
        datatype = REMOTE_MODELS[model][1]
        if datatype not in self.direct:
            raise Skip("MLServer's direct answers failed above")
        client = httpclient.InferenceServerClient(url=engine.http_address)
        x = np.asarray(ROWS, dtype=NUMPY[datatype])
        inp = httpclient.InferInput("input-0", list(x.shape), datatype)
        inp.set_data_from_numpy(x, binary_data=False)
        outs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in OUTPUTS]
        r = client.infer(model, [inp], model_version="v1", outputs=outs, headers=http_headers())
        same(
            {n: r.as_numpy(n) for n in OUTPUTS},
            self.direct[datatype],
            f"V2 infer {model} vs MLServer",
        )

    # -- outage and recovery -------------------------------------------------------------------

    def stop_mlserver(self) -> None:
        ms = self.need_mlserver()
        code = ms.stop()
        expect(not ms.running(), "MLServer is still running")
        print(f"        MLServer stopped (exit code {code})")

    def need_worked(self, model: str) -> None:
        if model not in self.worked:
            raise Skip(f"/predict {model} never answered right while MLServer was up")

    def fast_unavailable(self, model: str) -> None:
        self.need_engine()
        self.need_worked(model)
        status, body, first_ms = self.predict(model)
        code = body.get("code") if isinstance(body, dict) else None
        expect(
            status == 503 and code == "unavailable",
            f"first request after the stop: {status} {body} (expected 503, code 'unavailable')",
        )
        timings = []
        for _ in range(FAST_REQUESTS):
            status, body, ms = self.predict(model)
            code = body.get("code") if isinstance(body, dict) else None
            expect(status == 503 and code == "unavailable", f"later request: {status} {body}")
            timings.append(ms)
        slow = [f"{t:.1f}" for t in timings if t >= FAST_MS]
        print(f"        first {first_ms:.1f} ms, then {', '.join(f'{t:.1f}' for t in timings)} ms")
        expect(
            not slow, f"requests after the first failure took {slow} ms (limit {FAST_MS:.0f} ms)"
        )

    def restart_mlserver(self) -> None:
        if self.mlserver is None:
            raise Skip("MLServer was never started")
        self.mlserver.start()
        print(
            "        MLServer restarted on the same ports: "
            f"HTTP {self.mlserver.http_port}, gRPC {self.mlserver.grpc_port}"
        )

    def recovers(self, model: str) -> None:
        self.need_mlserver()
        engine = self.need_engine()
        self.need_worked(model)
        deadline = time.monotonic() + RECOVERY_S
        started = time.monotonic()
        last = None
        while time.monotonic() < deadline:
            status, body, _ = self.predict(model)
            last = (status, body)
            if status == 200:
                break
            time.sleep(0.25)
        expect(
            last is not None and last[0] == 200,
            f"no 200 within {RECOVERY_S:.0f} s; last answer {last}",
        )
        print(
            f"        answered 200 again {time.monotonic() - started:.1f} s after MLServer was back"
        )
        same(
            as_arrays(last[1].get("result")),
            self.direct[REMOTE_MODELS[model][1]],
            f"/predict {model} after recovery",
        )
        expect(engine.proc.pid == self.engine_pid, "the engine process changed")

    def close(self) -> int | None:
        code = None
        if self.engine is not None:
            code = self.engine.stop()
        if self.mlserver is not None:
            self.mlserver.stop()
        return code


def main() -> int:
    runner = Runner("v2 remote")
    workdir = Path(tempfile.mkdtemp(prefix="v2-remote-"))
    suite = Suite(workdir)
    c = runner.check
    try:
        c("train iris-sk and write its MLServer model folder", suite.make_model)
        c("MLServer starts (parallel_workers 0)", suite.start_mlserver)
        c(
            "MLServer answers directly (HTTP JSON and gRPC raw, FP64 and FP32)",
            suite.mlserver_direct,
        )
        c("engine starts on two remote_v2 models", suite.start_engine)
        for model in REMOTE_MODELS:
            c(f"/predict {model}:v1 equals MLServer's answer", suite.predict_equals_direct, model)
            c(f"V2 infer {model}:v1 equals MLServer's answer", suite.v2_equals_direct, model)
        c("stop MLServer", suite.stop_mlserver)
        for model in REMOTE_MODELS:
            c(
                f"{model}: 503 unavailable, then under {FAST_MS:.0f} ms each",
                suite.fast_unavailable,
                model,
            )
        c("restart MLServer on the same ports", suite.restart_mlserver)
        for model in REMOTE_MODELS:
            c(
                f"{model}: recovers within {RECOVERY_S:.0f} s, same engine process",
                suite.recovers,
                model,
            )
    finally:
        code = suite.close()
        if os.environ.get("V2_KEEP_TEMP"):
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if suite.engine_pid is not None:
        runner.check("engine exits 0 on SIGTERM", lambda: expect(code == 0, f"exit code {code}"))
    return runner.summary()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
