"""Open Inference Protocol (KServe V2) conformance of the engine with the official Triton clients.

Starts the real engine (tests/v2/engine.py: free HTTP and gRPC ports, the demo models of
models/, an empty engine.toml, the key `test-key`) and checks, with tritonclient.http (key in
the `X-API-Key` header) and tritonclient.grpc (key in the `x-api-key` metadata):

- the gRPC listener is announced (`grpc listening` log line with its address);
- server live, server ready and server metadata over HTTP and gRPC;
- model metadata of iris:v1 and mlp:v1 (input `input` FP32 [-1,4] / [-1,784]; outputs `label`
  INT64 [-1] and `probabilities` FP32 [-1,3] / [-1,10]) and model readiness, over both;
- `infer` on iris:v1, iris:v2 and mlp:v1 with numpy FP32 batches from testdata/expected/*.json,
  in three modes: HTTP JSON (binary_data=False on inputs and outputs; the answer must really be
  JSON), HTTP binary tensor extension (binary_data=True; the answer must carry
  binary_data_size) and gRPC (the client sends raw_input_contents; the answer must use
  raw_output_contents, the only form tritonclient.grpc's as_numpy decodes). The outputs must
  equal the engine's own `POST /predict` answers for the same rows (within 1e-5; iris:v1
  answers probability maps, iris:v2 argmax labels, mlp:v1 raw outputs) and the onnxruntime
  references in testdata/expected (labels exactly, probabilities within 1e-4, the tolerance of
  the engine's Rust tests);
- the request `id` is echoed and an `outputs` subset is honoured (HTTP and gRPC);
- raw inputs as `BYTES` tensors: texts for text_classifier:v1 (HTTP binary and gRPC) and
  encoded PNG files for digits_cnn:v2 (gRPC, and HTTP binary), whose logits must pick the labels
  of testdata/expected/text_classifier-v1.json and digits_cnn-v2.json;
- an unknown model is the client's NOT_FOUND (HTTP 404 / StatusCode.NOT_FOUND) for metadata and
  infer; a missing or wrong key is UNAUTHENTICATED (HTTP 401 / StatusCode.UNAUTHENTICATED).

Every check reports on its own (PASS/FAIL with the reason) and the run ends with
`v2 clients: N passed, N failed`; the exit code is non-zero if any check failed.

Run it through tests/v2/run.sh, or directly with the client venv's python once the engine is
built: target/v2-venv/client/bin/python tests/v2/test_clients.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import API_KEY, REPO, START_TIMEOUT_S, Engine, ServerError  # noqa: E402
from v2check import Runner, Skip, expect  # noqa: E402

IRIS_LABELS = ["setosa", "versicolor", "virginica"]
VS_PREDICT_TOLERANCE = 1e-5
VS_EXPECTED_TOLERANCE = 1e-4


def http_headers() -> dict[str, str]:
    # A new dict per call: tritonclient.http writes Inference-Header-Content-Length into the
    # headers dict it is given, and a reused dict would send a stale one with the next request.
    return {"X-API-Key": API_KEY}


def grpc_headers() -> dict[str, str]:
    return {"x-api-key": API_KEY}


# (model, version) -> (expected case index, features, classes)
MODELS = {
    ("iris", "v1"): (1, 4, 3),
    ("iris", "v2"): (1, 4, 3),
    ("mlp", "v1"): (1, 784, 10),
}
METADATA_MODELS = [("iris", "v1"), ("mlp", "v1")]


def expected_case(model: str, version: str) -> dict:
    doc = json.loads((REPO / "testdata" / "expected" / f"{model}-{version}.json").read_text())
    return doc["cases"][MODELS[(model, version)][0]]


def close(actual: np.ndarray, expected: np.ndarray, tolerance: float, what: str) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    expect(actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}")
    diff = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    expect(diff <= tolerance, f"{what}: differs by {diff:.3e} (> {tolerance:g})")


def status_of(fn) -> str:
    """Run fn, which must raise InferenceServerException; its status() (e.g. '404').

    The error must be a V2 error the client could read: over HTTP a JSON body with an `error`
    key (tritonclient reports any other body as "an exception occurred in the client while
    decoding the response"), so a route that does not exist at all is not taken for a 404 of
    the protocol.
    """
    try:
        fn()
    except InferenceServerException as e:
        message = str(e.message() or "")
        expect(
            not message.startswith("an exception occurred in the client"),
            f'status {e.status()} without a V2 error body {{"error": ...}}: {message[:300]}',
        )
        return str(e.status())
    raise AssertionError("the call succeeded; an error was expected")


class Suite:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.http = httpclient.InferenceServerClient(url=engine.http_address, network_timeout=30.0)
        self.grpc = grpcclient.InferenceServerClient(url=engine.grpc_address)
        self.grpc_up = False
        self.references: dict[tuple[str, str], dict | Exception] = {}

    # -- grpc listener -----------------------------------------------------------------------

    def grpc_listening(self) -> None:
        left = max(0.0, START_TIMEOUT_S - (time.monotonic() - self.engine_started))
        line = self.engine.wait_for_log("grpc listening", left)
        expect(
            line is not None,
            f"no 'grpc listening' log line within {START_TIMEOUT_S:.0f} s of the start "
            f"(GRPC_PORT={self.engine.grpc_port}): the gRPC checks below will fail",
        )
        address = line.get("address") or line.get("fields", {}).get("address")
        expect(
            isinstance(address, str) and address.endswith(f":{self.engine.grpc_port}"),
            f"the 'grpc listening' line's address is {address!r}, "
            f"not on port {self.engine.grpc_port}",
        )
        self.grpc_up = True

    # -- server ------------------------------------------------------------------------------

    def http_live(self) -> None:
        expect(
            self.http.is_server_live(headers=http_headers()),
            "is_server_live() is False (GET /v2/health/live)",
        )

    def http_ready(self) -> None:
        # The engine is not ready while warm-up loads the models (as Triton during its model
        # load): poll with a deadline rather than expecting readiness at the first instant.
        deadline = time.monotonic() + 30
        while not self.http.is_server_ready(headers=http_headers()):
            expect(
                time.monotonic() < deadline,
                "is_server_ready() stayed False for 30 s (GET /v2/health/ready)",
            )
            time.sleep(0.05)

    def http_server_metadata(self) -> None:
        md = self.http.get_server_metadata(headers=http_headers())
        expect(isinstance(md, dict), f"metadata is not a JSON object: {md!r}")
        expect(isinstance(md.get("name"), str) and md["name"], f"no server name: {md}")
        expect(isinstance(md.get("version"), str) and md["version"], f"no server version: {md}")
        expect(isinstance(md.get("extensions"), list), f"no extensions list: {md}")

    def grpc_live(self) -> None:
        expect(self.grpc.is_server_live(headers=grpc_headers()), "ServerLive.live is false")

    def grpc_ready(self) -> None:
        expect(self.grpc.is_server_ready(headers=grpc_headers()), "ServerReady.ready is false")

    def grpc_server_metadata(self) -> None:
        md = self.grpc.get_server_metadata(headers=grpc_headers())
        expect(md.name, f"no server name: {md}")
        expect(md.version, f"no server version: {md}")

    # -- model metadata -----------------------------------------------------------------------

    @staticmethod
    def want_metadata(model: str) -> tuple[list, dict]:
        features, classes = {"iris": (4, 3), "mlp": (784, 10)}[model]
        inputs = [("input", "FP32", [-1, features])]
        outputs = {"label": ("INT64", [-1]), "probabilities": ("FP32", [-1, classes])}
        return inputs, outputs

    def check_metadata(self, model, version, name, versions, inputs, outputs) -> None:
        want_inputs, want_outputs = self.want_metadata(model)
        expect(name == model, f"name {name!r} != {model!r}")
        expect(not versions or version in versions, f"versions {versions} lack {version!r}")
        expect(inputs == want_inputs, f"inputs {inputs} != {want_inputs}")
        got = {n: (d, s) for n, d, s in outputs}
        expect(len(got) == len(outputs), f"duplicate output names: {outputs}")
        expect(got == want_outputs, f"outputs {got} != {want_outputs}")

    def http_model_metadata(self, model: str, version: str) -> None:
        md = self.http.get_model_metadata(model, version, headers=http_headers())
        self.check_metadata(
            model,
            version,
            md.get("name"),
            md.get("versions") or [],
            [(t["name"], t["datatype"], list(t["shape"])) for t in md.get("inputs", [])],
            [(t["name"], t["datatype"], list(t["shape"])) for t in md.get("outputs", [])],
        )

    def grpc_model_metadata(self, model: str, version: str) -> None:
        md = self.grpc.get_model_metadata(model, version, headers=grpc_headers())
        self.check_metadata(
            model,
            version,
            md.name,
            list(md.versions),
            [(t.name, t.datatype, list(t.shape)) for t in md.inputs],
            [(t.name, t.datatype, list(t.shape)) for t in md.outputs],
        )

    def http_model_ready(self, model: str, version: str) -> None:
        expect(
            self.http.is_model_ready(model, version, headers=http_headers()),
            f"is_model_ready({model!r}, {version!r}) is False",
        )

    def grpc_model_ready(self, model: str, version: str) -> None:
        expect(
            self.grpc.is_model_ready(model, version, headers=grpc_headers()),
            f"ModelReady({model!r}, {version!r}) is false",
        )

    # -- the /predict reference ----------------------------------------------------------------

    def predict_reference(self, model: str, version: str) -> dict:
        """The engine's own POST /predict answer for the case's rows, as arrays."""
        case = expected_case(model, version)
        status, body = self.engine.predict(model, version, case["input"])
        expect(status == 200, f"POST /predict {model}:{version} answered {status}: {body}")
        result = body.get("result") if isinstance(body, dict) else None
        expect(
            isinstance(result, list) and len(result) == len(case["input"]),
            f"/predict result is not one entry per row: {str(body)[:300]}",
        )
        ref: dict = {}
        if (model, version) == ("iris", "v1"):
            expect(all(isinstance(r, dict) for r in result), f"iris:v1 rows are not maps: {result}")
            ref["probabilities"] = np.array(
                [[row[label] for label in IRIS_LABELS] for row in result]
            )
            ref["label"] = np.argmax(ref["probabilities"], axis=1)
        elif (model, version) == ("iris", "v2"):
            expect(all(r in IRIS_LABELS for r in result), f"iris:v2 rows are not labels: {result}")
            ref["label"] = np.array([IRIS_LABELS.index(r) for r in result])
        else:
            expect(all(isinstance(r, dict) for r in result), f"mlp:v1 rows are not maps: {result}")
            ref["label"] = np.array([row["label"] for row in result])
            ref["probabilities"] = np.array([row["probabilities"] for row in result])
        # The reference itself must agree with onnxruntime, or comparing with it proves nothing.
        expect(
            ref["label"].tolist() == case["outputs"]["label"],
            f"/predict labels {ref['label'].tolist()} != expected {case['outputs']['label']}",
        )
        if "probabilities" in ref:
            close(
                ref["probabilities"],
                case["outputs"]["probabilities"],
                VS_EXPECTED_TOLERANCE,
                "/predict probabilities vs testdata/expected",
            )
        self.references[(model, version)] = ref
        return ref

    def reference(self, model: str, version: str) -> dict:
        ref = self.references.get((model, version))
        if ref is None:
            raise Skip(f"the /predict reference of {model}:{version} failed above")
        return ref

    # -- infer -------------------------------------------------------------------------------

    def compare(
        self, model: str, version: str, labels: np.ndarray, probabilities: np.ndarray
    ) -> None:
        case = expected_case(model, version)
        _, features, classes = MODELS[(model, version)]
        rows = len(case["input"])
        expect(labels is not None, "no `label` output in the answer")
        expect(probabilities is not None, "no `probabilities` output in the answer")
        expect(labels.dtype == np.int64, f"label dtype {labels.dtype}, not int64")
        expect(labels.shape == (rows,), f"label shape {labels.shape}, not ({rows},)")
        expect(
            probabilities.dtype == np.float32,
            f"probabilities dtype {probabilities.dtype}, not float32",
        )
        expect(
            probabilities.shape == (rows, classes),
            f"probabilities shape {probabilities.shape}, not ({rows}, {classes})",
        )
        ref = self.reference(model, version)
        expect(
            labels.tolist() == ref["label"].tolist(),
            f"labels {labels.tolist()} != /predict's {ref['label'].tolist()}",
        )
        if "probabilities" in ref:
            close(
                probabilities,
                ref["probabilities"],
                VS_PREDICT_TOLERANCE,
                "probabilities vs /predict",
            )
        expect(
            labels.tolist() == case["outputs"]["label"],
            f"labels {labels.tolist()} != testdata/expected {case['outputs']['label']}",
        )
        close(
            probabilities,
            case["outputs"]["probabilities"],
            VS_EXPECTED_TOLERANCE,
            "probabilities vs testdata/expected",
        )

    def http_infer(self, model: str, version: str, binary: bool) -> None:
        x = np.asarray(expected_case(model, version)["input"], dtype=np.float32)
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("label", binary_data=binary),
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        ]
        result = self.http.infer(
            model, [inp], model_version=version, outputs=outputs, headers=http_headers()
        )
        response = result.get_response()
        expect(response.get("model_name") == model, f"model_name {response.get('model_name')!r}")
        expect(
            response.get("model_version") == version,
            f"model_version {response.get('model_version')!r}",
        )
        for out in response.get("outputs", []):
            sized = "binary_data_size" in (out.get("parameters") or {})
            if binary:
                expect(
                    sized and "data" not in out, f"output {out.get('name')} is not binary: {out}"
                )
            else:
                expect(
                    not sized and "data" in out, f"output {out.get('name')} is not JSON data: {out}"
                )
        self.compare(model, version, result.as_numpy("label"), result.as_numpy("probabilities"))

    def grpc_infer(self, model: str, version: str) -> None:
        x = np.asarray(expected_case(model, version)["input"], dtype=np.float32)
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)  # sent as raw_input_contents
        outputs = [
            grpcclient.InferRequestedOutput("label"),
            grpcclient.InferRequestedOutput("probabilities"),
        ]
        result = self.grpc.infer(
            model, [inp], model_version=version, outputs=outputs, headers=grpc_headers()
        )
        response = result.get_response()
        expect(response.model_name == model, f"model_name {response.model_name!r}")
        expect(response.model_version == version, f"model_version {response.model_version!r}")
        expect(
            len(response.raw_output_contents) == len(response.outputs) == 2,
            f"{len(response.outputs)} outputs with {len(response.raw_output_contents)} "
            "raw_output_contents: a raw request must get raw_output_contents (one per output)",
        )
        self.compare(model, version, result.as_numpy("label"), result.as_numpy("probabilities"))

    @staticmethod
    def text_case() -> tuple[list[str], list[str]]:
        doc = json.loads((REPO / "testdata" / "expected" / "text_classifier-v1.json").read_text())
        case = next(case for case in doc["cases"] if case["name"] == "list")
        return case["data"], [result["label"] for result in case["result"]]

    @staticmethod
    def digit_cases() -> tuple[list[bytes], list[str]]:
        doc = json.loads((REPO / "testdata" / "expected" / "digits_cnn-v2.json").read_text())
        files = [
            (REPO / "testdata" / "images" / "digits" / case["file"]).read_bytes()
            for case in doc["cases"]
        ]
        return files, [case["label"] for case in doc["cases"]]

    @staticmethod
    def labels_of(logits: np.ndarray, labels: list[str]) -> list[str]:
        return [labels[i] for i in np.asarray(logits).argmax(axis=1)]

    def bytes_infer(self, module, client, headers, model, version, elements, binary) -> np.ndarray:
        data = np.array(elements, dtype=np.object_)
        inp = module.InferInput("raw", [len(elements)], "BYTES")
        if module is httpclient:
            inp.set_data_from_numpy(data, binary_data=binary)
        else:
            inp.set_data_from_numpy(data)
        result = client.infer(model, [inp], model_version=version, headers=headers)
        return result.as_numpy("logits")

    def texts_as_bytes(self, module, client, headers, binary: bool) -> None:
        texts, labels = self.text_case()
        encoded = [text.encode("utf-8") for text in texts]
        logits = self.bytes_infer(
            module, client, headers, "text_classifier", "v1", encoded, binary
        )
        expect(logits.shape == (len(texts), 2), f"logits shape {logits.shape}")
        got = self.labels_of(logits, ["negative", "positive"])
        expect(got == labels, f"labels {got} != {labels}")

    def images_as_bytes(self, module, client, headers, binary: bool) -> None:
        files, labels = self.digit_cases()
        logits = self.bytes_infer(module, client, headers, "digits_cnn", "v2", files, binary)
        expect(logits.shape == (len(files), 10), f"logits shape {logits.shape}")
        got = self.labels_of(logits, [str(digit) for digit in range(10)])
        expect(got == labels, f"labels {got} != {labels}")

    def http_id_and_subset(self) -> None:
        x = np.asarray(expected_case("iris", "v1")["input"], dtype=np.float32)
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=False)
        result = self.http.infer(
            "iris",
            [inp],
            model_version="v1",
            request_id="v2-conformance-7",
            outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=False)],
            headers=http_headers(),
        )
        response = result.get_response()
        expect(response.get("id") == "v2-conformance-7", f"id {response.get('id')!r} not echoed")
        names = [o.get("name") for o in response.get("outputs", [])]
        expect(names == ["probabilities"], f"asked for ['probabilities'], got {names}")

    def grpc_id_and_subset(self) -> None:
        x = np.asarray(expected_case("iris", "v1")["input"], dtype=np.float32)
        inp = grpcclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = self.grpc.infer(
            "iris",
            [inp],
            model_version="v1",
            request_id="v2-conformance-7",
            outputs=[grpcclient.InferRequestedOutput("probabilities")],
            headers=grpc_headers(),
        )
        response = result.get_response()
        expect(response.id == "v2-conformance-7", f"id {response.id!r} not echoed")
        names = [o.name for o in response.outputs]
        expect(names == ["probabilities"], f"asked for ['probabilities'], got {names}")

    # -- errors ------------------------------------------------------------------------------

    def iris_inputs(self, module):
        x = np.asarray(expected_case("iris", "v1")["input"], dtype=np.float32)
        inp = module.InferInput("input", list(x.shape), "FP32")
        if module is httpclient:
            inp.set_data_from_numpy(x, binary_data=False)
        else:
            inp.set_data_from_numpy(x)
        return [inp]

    def http_unknown_model(self) -> None:
        s = status_of(lambda: self.http.get_model_metadata("no-such-model", headers=http_headers()))
        expect(s == "404", f"model metadata of an unknown model: status {s}, not 404")
        s = status_of(
            lambda: self.http.infer(
                "no-such-model", self.iris_inputs(httpclient), headers=http_headers()
            )
        )
        expect(s == "404", f"infer on an unknown model: status {s}, not 404")
        s = status_of(
            lambda: self.http.infer(
                "iris", self.iris_inputs(httpclient), model_version="v99", headers=http_headers()
            )
        )
        expect(s == "404", f"infer on an unknown version: status {s}, not 404")

    def grpc_unknown_model(self) -> None:
        want = "StatusCode.NOT_FOUND"
        s = status_of(lambda: self.grpc.get_model_metadata("no-such-model", headers=grpc_headers()))
        expect(s == want, f"ModelMetadata of an unknown model: {s}, not {want}")
        s = status_of(
            lambda: self.grpc.infer(
                "no-such-model", self.iris_inputs(grpcclient), headers=grpc_headers()
            )
        )
        expect(s == want, f"ModelInfer on an unknown model: {s}, not {want}")
        s = status_of(
            lambda: self.grpc.infer(
                "iris", self.iris_inputs(grpcclient), model_version="v99", headers=grpc_headers()
            )
        )
        expect(s == want, f"ModelInfer on an unknown version: {s}, not {want}")

    def http_unauthenticated(self) -> None:
        for headers, what in [(None, "no key"), ({"X-API-Key": "wrong-key"}, "a wrong key")]:
            s = status_of(
                lambda h=headers: self.http.infer(
                    "iris",
                    self.iris_inputs(httpclient),
                    model_version="v1",
                    headers=dict(h) if h else None,
                )
            )
            expect(s == "401", f"infer with {what}: status {s}, not 401")
            s = status_of(
                lambda h=headers: self.http.get_model_metadata(
                    "iris", "v1", headers=dict(h) if h else None
                )
            )
            expect(s == "401", f"model metadata with {what}: status {s}, not 401")

    def grpc_unauthenticated(self) -> None:
        want = "StatusCode.UNAUTHENTICATED"
        for headers, what in [(None, "no key"), ({"x-api-key": "wrong-key"}, "a wrong key")]:
            s = status_of(
                lambda h=headers: self.grpc.infer(
                    "iris",
                    self.iris_inputs(grpcclient),
                    model_version="v1",
                    headers=dict(h) if h else None,
                )
            )
            expect(s == want, f"ModelInfer with {what}: {s}, not {want}")
            s = status_of(
                lambda h=headers: self.grpc.get_model_metadata(
                    "iris", "v1", headers=dict(h) if h else None
                )
            )
            expect(s == want, f"ModelMetadata with {what}: {s}, not {want}")


def main() -> int:
    runner = Runner("v2 clients")
    engine = Engine()
    started = time.monotonic()
    # Wait for the HTTP listener here; the gRPC one is a check of its own, so that the HTTP
    # checks still run (and say what works) while gRPC is missing.
    if (
        runner.check("engine starts (log line 'listening')", engine.start, wait_for=("listening",))
        is None
    ):
        return runner.summary()
    try:
        suite = Suite(engine)
        suite.engine_started = started
        c = runner.check
        c("engine logs 'grpc listening' with its address", suite.grpc_listening)

        c("http: server live", suite.http_live)
        c("http: server ready", suite.http_ready)
        c("http: server metadata", suite.http_server_metadata)
        c("grpc: server live", suite.grpc_live)
        c("grpc: server ready", suite.grpc_ready)
        c("grpc: server metadata", suite.grpc_server_metadata)
        for model, version in METADATA_MODELS:
            c(f"http: model metadata {model}:{version}", suite.http_model_metadata, model, version)
            c(f"grpc: model metadata {model}:{version}", suite.grpc_model_metadata, model, version)
            c(f"http: model ready {model}:{version}", suite.http_model_ready, model, version)
            c(f"grpc: model ready {model}:{version}", suite.grpc_model_ready, model, version)

        for model, version in MODELS:
            c(
                f"/predict reference {model}:{version} (vs testdata/expected)",
                suite.predict_reference,
                model,
                version,
            )
            c(f"http: infer {model}:{version} JSON", suite.http_infer, model, version, False)
            c(f"http: infer {model}:{version} binary", suite.http_infer, model, version, True)
            c(f"grpc: infer {model}:{version} raw", suite.grpc_infer, model, version)
        text_http = (httpclient, suite.http, http_headers())
        c("http: texts as a BYTES tensor (JSON)", lambda: suite.texts_as_bytes(*text_http, False))
        c("http: texts as a BYTES tensor (binary)", lambda: suite.texts_as_bytes(*text_http, True))
        c(
            "grpc: texts as a BYTES tensor",
            lambda: suite.texts_as_bytes(grpcclient, suite.grpc, grpc_headers(), True),
        )
        c(
            "http: PNG files as a BYTES tensor (binary)",
            lambda: suite.images_as_bytes(httpclient, suite.http, http_headers(), True),
        )
        c(
            "grpc: PNG files as a BYTES tensor",
            lambda: suite.images_as_bytes(grpcclient, suite.grpc, grpc_headers(), True),
        )
        c("http: infer echoes the id, honours an outputs subset", suite.http_id_and_subset)
        c("grpc: infer echoes the id, honours an outputs subset", suite.grpc_id_and_subset)

        c("http: unknown model/version is 404", suite.http_unknown_model)
        c("grpc: unknown model/version is NOT_FOUND", suite.grpc_unknown_model)
        c("http: missing or wrong key is 401", suite.http_unauthenticated)
        c("grpc: missing or wrong key is UNAUTHENTICATED", suite.grpc_unauthenticated)
        c(
            "engine still running",
            lambda: expect(engine.running(), "the engine exited during the checks"),
        )
    finally:
        code = engine.stop()
    runner.check("engine exits 0 on SIGTERM", lambda: expect(code == 0, f"exit code {code}"))
    return runner.summary()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
