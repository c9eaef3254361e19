#!/usr/bin/env python3
"""Manual end-to-end check: torchvision ResNet-18 and MobileNetV3-Small served by the engine.

MANUAL CHECK ONLY. It is heavy (torch + torchvision, a ~45 MB and a ~10 MB ONNX file, a debug
server doing 224x224 convnets), so it is never run in CI and its outputs are not committed; the
committed fixtures (scripts/gen_torch_models.py) stay small. It checks, the way a user would,
that two real-size vision families load and answer correctly:

1. Export: torchvision `resnet18(weights=None)` and `mobilenet_v3_small(weights=None)`, random
   weights (torch.manual_seed(0); nothing is downloaded, no pretrained weights, no model hub),
   then BatchNorm running statistics calibrated on seeded random normal images (see
   `calibrate_batchnorm`: with torchvision's init left as is, MobileNetV3-Small's eval-mode
   logits are ~1e-9 and any comparison passes vacuously), eval mode, with the dynamo exporter
   (`torch.onnx.export(..., dynamo=True, dynamic_shapes=...)`) and a dynamic batch axis: input
   `image` FP32 [batch, 3, 224, 224], output `logits` FP32 [batch, 1000], one self-contained
   model.onnx (external_data=False).
   The script prints each file's size, opsets and op histogram, and compares onnxruntime in
   Python with PyTorch eager (informational).
2. Inspect: `inference-engine models inspect model.onnx`; everything after its
   `suggested model.toml:` line is written, unchanged, as model.toml next to model.onnx in
   `<out>/models/<name>/v1/`.
3. Serve: `inference-engine serve` on a free port with `env -i` (PATH, ORT_DYLIB_PATH,
   MODELS_DIR, SQLITE_DB_PATH, GRPC_PORT=0, LOG_FORMAT=json, MAX_BODY_BYTES=20000000 because a
   224x224x3 image is ~1.2 MB of JSON), in a temporary working directory; waits for
   `GET /health` and `GET /ready` (warm-up loads both models).
4. Compare: seeded random normal images (np.random.default_rng(0), rounded to 4 decimals),
   batch sizes 1 and 3, through `POST /predict` (JSON) and `POST /v2/models/NAME/versions/v1/
   infer` with the binary tensor extension (raw little-endian float32 in and out), against
   onnxruntime in Python on the same model.onnx. Pass: |engine - ort| <= 1e-4 * max(1, |ort|)
   for every logit (absolute, or relative where |x| > 1); the reference logits must not be
   degenerate (max |logit| >= 0.01). The JSON path also reports how many returned numbers,
   read as float32, equal the reference bit for bit (JSON numbers are decimal text, so read as
   float64 they differ from the float32 values by up to half a float32 ulp).

Prints a summary (max |diff| per family, path and batch size; load times from the engine's log)
and exits 1 on any mismatch or error.

Setup and run (from the repository root; needs the built debug binary and the ONNX Runtime
library from scripts/install-onnxruntime.sh):

    python3 -m venv /tmp/venv-large
    /tmp/venv-large/bin/pip install -r scripts/requirements-torch-models.txt
    # torchvision 0.29.2 asks for torch>=2.14 and pillow; --no-deps: pip never touches torch
    /tmp/venv-large/bin/pip install --no-deps torchvision==0.29.2 pillow
    cargo build -p inference-engine-cli   # target/debug/inference-engine
    /tmp/venv-large/bin/python scripts/check_large_families.py

Options: --out DIR (default target/large-families), --engine PATH, --ort-dylib PATH,
--reuse-export (keep existing model.onnx files), --default-init (skip the BatchNorm
calibration, to see the degenerate MobileNetV3 logits), --ready-timeout SECONDS (default 120).
Only the Python standard library (urllib) and numpy talk to the server.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4
API_KEY = "dev-key"
BATCH_SIZES = (1, 3)
FAMILIES = ("resnet18", "mobilenet_v3_small")
SHAPE = (3, 224, 224)
CLASSES = 1000
MIN_LOGIT_SCALE = 1e-2  # max |logit| below this: the reference is degenerate


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def calibrate_batchnorm(model, batches: int = 4, size: int = 8) -> None:
    """Sets every BatchNorm's running mean/var to the statistics of its input on random images.

    torchvision's init leaves running_mean 0 / running_var 1, so in eval mode each BatchNorm is
    an identity and nothing keeps activations at unit scale: MobileNetV3-Small (Hardswish ~ x/2
    near 0, squeeze-excite gates ~ 0.5) shrinks them ~100x every few blocks, down to logits of
    ~1e-9. A few train-mode forward passes (cumulative averages, momentum=None) on seeded
    N(0, 1) images, what training would do to these buffers, keep the weights random and make
    eval-mode activations O(1). No parameter changes; no gradients.
    """
    import torch

    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None
    gen = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(size, *SHAPE, generator=gen))
    model.eval()


def build(name: str, default_init: bool):
    import torch
    import torchvision

    torch.manual_seed(0)
    ctor = {
        "resnet18": torchvision.models.resnet18,
        "mobilenet_v3_small": torchvision.models.mobilenet_v3_small,
    }[name]
    model = ctor(weights=None).eval()  # random weights: nothing downloaded
    if not default_init:
        calibrate_batchnorm(model)
    log(
        f"{name}: torchvision {torchvision.__version__}, torch {torch.__version__}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{'torchvision default init' if default_init else 'BatchNorm statistics calibrated'}"
    )
    return model


def export(name: str, model, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch")
    example = torch.randn(2, *SHAPE)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        started = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                model,
                (example,),
                str(out),
                dynamo=True,
                external_data=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
            )
        written = sorted(p.name for p in Path(tmp).iterdir())
        if written != ["model.onnx"]:
            raise SystemExit(f"{name}: the exporter wrote {written}, expected only model.onnx")
        shutil.move(str(out), path)
    log(f"{name}: exported in {time.monotonic() - started:.1f} s -> {path}")


def describe(name: str, path: Path) -> dict:
    import onnx

    onx = onnx.load(str(path))
    onnx.checker.check_model(str(path))
    ops = collections.Counter(
        f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in onx.graph.node
    )
    functions = [f"{f.domain}:{f.name}" for f in onx.functions]

    def io(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in t.shape.dim]
            out.append(f"{v.name}: {onnx.TensorProto.DataType.Name(t.elem_type)} {dims}")
        return out

    info = {
        "bytes": path.stat().st_size,
        "ir_version": onx.ir_version,
        "producer": f"{onx.producer_name} {onx.producer_version}",
        "opsets": {(o.domain or "ai.onnx"): o.version for o in onx.opset_import},
        "nodes": len(onx.graph.node),
        "initializers": len(onx.graph.initializer),
        "ops": dict(sorted(ops.items())),
        "functions": functions,
        "inputs": io(onx.graph.input),
        "outputs": io(onx.graph.output),
    }
    log(f"{name}: {info['bytes']:,} bytes ({info['bytes'] / 2**20:.1f} MiB), "
        f"IR {info['ir_version']}, producer {info['producer']}, opsets {info['opsets']}")
    log(f"  {info['nodes']} nodes, {info['initializers']} initializers, "
        f"local functions: {functions or 'none'}")
    log(f"  ops: {', '.join(f'{k} x{v}' for k, v in info['ops'].items())}")
    log(f"  inputs: {info['inputs']}; outputs: {info['outputs']}")
    return info


# --------------------------------------------------------------------------------------------
# Inputs and references
# --------------------------------------------------------------------------------------------


def make_inputs() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Batch size -> (float64 values rounded to 4 decimals, the same as float32).

    The JSON path sends the float64 values (short decimal text); the engine parses them to f32,
    which equals the float32 array fed to onnxruntime and sent on the binary path.
    """
    rng = np.random.default_rng(0)
    out = {}
    for b in BATCH_SIZES:
        x64 = np.round(rng.standard_normal((b, *SHAPE)), 4)
        out[b] = (x64, x64.astype(np.float32))
    return out


def ort_reference(path: Path, inputs) -> dict[int, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {b: sess.run(["logits"], {"image": x32})[0] for b, (_, x32) in inputs.items()}


def worst(got: np.ndarray, ref: np.ndarray) -> tuple[float, float, bool]:
    """(max |diff|, max |diff| / max(1, |ref|), within tolerance)."""
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    scaled = diff / np.maximum(1.0, np.abs(ref.astype(np.float64)))
    ok = bool(np.all(np.isfinite(got))) and float(scaled.max()) <= TOLERANCE
    return float(diff.max()), float(scaled.max()), ok


# --------------------------------------------------------------------------------------------
# Inspect
# --------------------------------------------------------------------------------------------


def inspect(engine: Path, ort_dylib: Path, path: Path) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ORT_DYLIB_PATH": str(ort_dylib)}
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(
            [str(engine), "models", "inspect", str(path)],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        )
    log(f"$ inference-engine models inspect {path}  (exit {proc.returncode})")
    log(proc.stdout.rstrip())
    if proc.stderr.strip():
        log("stderr: " + proc.stderr.strip())
    if proc.returncode != 0:
        raise SystemExit(f"models inspect failed with exit {proc.returncode}")
    marker = "suggested model.toml:"
    lines = proc.stdout.splitlines(keepends=True)
    idx = [i for i, line in enumerate(lines) if line.strip() == marker]
    if not idx:
        raise SystemExit(f"no `{marker}` line in the inspect output")
    manifest = "".join(lines[idx[-1] + 1:])
    (path.parent / "model.toml").write_text(manifest)
    return manifest


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, engine: Path, ort_dylib: Path, models_dir: Path, log_path: Path):
        self.workdir = Path(tempfile.mkdtemp(prefix="large-families-"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ORT_DYLIB_PATH": str(ort_dylib),
            "MODELS_DIR": str(models_dir),
            "SQLITE_DB_PATH": str(self.workdir / "jobs.db"),
            "GRPC_PORT": "0",
            "LOG_FORMAT": "json",
            "MAX_BODY_BYTES": "20000000",
        }
        self.log_file = open(log_path, "wb")
        cmd = [str(engine), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        log(f"$ env -i {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(cmd)}")
        log(f"  working directory {self.workdir}, log {log_path}")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def request(self, method, path, body=None, headers=None, timeout=600):
        req = urllib.request.Request(self.base + path, data=body, method=method)
        req.add_header("X-API-Key", API_KEY)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()

    def wait_ready(self, timeout: float) -> None:
        deadline = self.started + timeout
        for path in ("/health", "/ready"):
            last = None
            while True:
                if self.proc.poll() is not None:
                    raise SystemExit(
                        f"the server exited with {self.proc.returncode} before {path} was 200; "
                        f"log tail:\n{self.log_tail()}"
                    )
                try:
                    status, _, _ = self.request("GET", path, timeout=5)
                    if status == 200:
                        break
                    last = status
                except urllib.error.HTTPError as err:
                    last = f"{err.code} {err.read()[:300]!r}"
                except (urllib.error.URLError, ConnectionError, socket.timeout) as err:
                    last = repr(err)
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"{path} not 200 within {timeout:.0f} s (last: {last}); "
                        f"log tail:\n{self.log_tail()}"
                    )
                time.sleep(0.5)
            log(f"  GET {path} 200 after {time.monotonic() - self.started:.1f} s")

    def log_tail(self, n: int = 30) -> str:
        self.log_file.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def load_events(log_path: Path) -> list[dict]:
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        msg = str(rec.get("message", ""))
        if msg in ("listening", "model loaded", "warm-up finished") or "not ready" in msg:
            events.append(rec)
    return events


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def predict_json(server: Server, name: str, x64: np.ndarray) -> tuple[np.ndarray, int]:
    body = json.dumps({"model": name, "version": "v1", "data": x64.tolist()}).encode()
    _, _, raw = server.request(
        "POST", "/predict", body, {"Content-Type": "application/json"}
    )
    answer = json.loads(raw)
    rows = answer["result"]
    if not isinstance(rows, list) or len(rows) != len(x64):
        raise AssertionError(f"/predict result is not {len(x64)} rows: {str(answer)[:300]}")
    out = [row["logits"] if isinstance(row, dict) else row for row in rows]
    got = np.asarray(out, dtype=np.float64)
    if got.shape != (len(x64), CLASSES):
        raise AssertionError(f"/predict logits shape {got.shape}")
    return got, len(body)


def f32_exact(got: np.ndarray, ref: np.ndarray) -> str:
    same = int(np.sum(got.astype(np.float32) == ref.astype(np.float32)))
    return f"{same}/{ref.size}"


def infer_binary(server: Server, name: str, x32: np.ndarray) -> tuple[np.ndarray, int]:
    raw = x32.astype("<f4").tobytes()
    header = json.dumps({
        "inputs": [{
            "name": "image", "datatype": "FP32", "shape": list(x32.shape),
            "parameters": {"binary_data_size": len(raw)},
        }],
        "parameters": {"binary_data_output": True},
    }).encode()
    _, headers, body = server.request(
        "POST", f"/v2/models/{name}/versions/v1/infer", header + raw,
        {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )
    lowered = {k.lower(): v for k, v in headers.items()}
    hlen = int(lowered["inference-header-content-length"])
    meta = json.loads(body[:hlen])
    offset = hlen
    outputs = {}
    for out in meta["outputs"]:
        size = out["parameters"]["binary_data_size"]
        outputs[out["name"]] = (out, body[offset:offset + size])
        offset += size
    if offset != len(body):
        raise AssertionError(f"V2 response: {len(body) - offset} bytes beyond the outputs")
    out, data = outputs["logits"]
    if out["datatype"] != "FP32" or out["shape"] != [len(x32), CLASSES]:
        raise AssertionError(f"V2 logits: {out['datatype']} {out['shape']}")
    return np.frombuffer(data, dtype="<f4").reshape(len(x32), CLASSES), len(header) + len(raw)


# --------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "target" / "large-families")
    ap.add_argument("--engine", type=Path, default=ROOT / "target" / "debug" / "inference-engine")
    ap.add_argument("--ort-dylib", type=Path,
                    default=ROOT / "onnxruntime" / "libonnxruntime.so")
    ap.add_argument("--reuse-export", action="store_true",
                    help="keep an existing <out>/models/<name>/v1/model.onnx")
    ap.add_argument("--default-init", action="store_true",
                    help="skip calibrate_batchnorm (MobileNetV3 logits are then ~1e-9)")
    ap.add_argument("--ready-timeout", type=float, default=120.0)
    args = ap.parse_args()
    out = args.out.resolve()
    models_dir = out / "models"
    for p in (args.engine, args.ort_dylib):
        if not p.exists():
            raise SystemExit(f"missing {p}")

    inputs = make_inputs()
    refs: dict[str, dict[int, np.ndarray]] = {}
    infos: dict[str, dict] = {}
    manifests: dict[str, str] = {}
    degenerate: list[str] = []

    log("== export ==")
    for name in FAMILIES:
        path = models_dir / name / "v1" / "model.onnx"
        if args.reuse_export and path.exists():
            log(f"{name}: reusing {path}")
            model = None
        else:
            model = build(name, args.default_init)
            export(name, model, path)
        infos[name] = describe(name, path)
        refs[name] = ort_reference(path, inputs)
        if model is not None:
            import torch
            with torch.no_grad():
                for b, (_, x32) in inputs.items():
                    eager = model(torch.from_numpy(x32)).numpy()
                    d, s, ok = worst(refs[name][b], eager)
                    log(f"  onnxruntime-python vs torch eager, batch {b}: max |diff| {d:.3g}, "
                        f"scaled {s:.3g} {'(ok)' if ok else '(ABOVE 1e-4, informational)'}")
        for b, r in refs[name].items():
            log(f"  ort logits batch {b}: shape {list(r.shape)}, range "
                f"[{r.min():.4g}, {r.max():.4g}], mean |x| {np.abs(r).mean():.4g}")
            if float(np.abs(r).max()) < MIN_LOGIT_SCALE:
                degenerate.append(f"{name} batch {b}: max |logit| {np.abs(r).max():.3g}")

    log("\n== inspect ==")
    for name in FAMILIES:
        manifests[name] = inspect(args.engine, args.ort_dylib,
                                  models_dir / name / "v1" / "model.onnx")
        log(f"-> wrote {models_dir / name / 'v1' / 'model.toml'} (the suggested manifest, "
            "unchanged)\n")

    log("== serve ==")
    results = []  # (family, path, batch, max_abs, max_scaled, ok, float32-identical, error)
    server = Server(args.engine, args.ort_dylib, models_dir, out / "engine.log")
    try:
        server.wait_ready(args.ready_timeout)
        log("\n== compare ==")
        for name in FAMILIES:
            for b in BATCH_SIZES:
                x64, x32 = inputs[b]
                for label, call, arg in (
                    ("/predict JSON", predict_json, x64),
                    ("V2 binary", infer_binary, x32),
                ):
                    t0 = time.monotonic()
                    try:
                        got, sent = call(server, name, arg)
                        dt = time.monotonic() - t0
                        ref = refs[name][b]
                        d, s, ok = worst(got, ref)
                        same = f32_exact(got, ref)
                        results.append((name, label, b, d, s, ok, same, None))
                        log(f"{name} {label} batch {b}: {sent:,} bytes sent, {dt:.2f} s, "
                            f"max |diff| {d:.3g}, scaled {s:.3g}, {same} bit-identical "
                            f"as float32, "
                            f"max |logit| {np.abs(ref).max():.3g} -> "
                            f"{'ok' if ok else 'MISMATCH'}")
                    except urllib.error.HTTPError as err:
                        msg = f"HTTP {err.code}: {err.read().decode(errors='replace')[:1000]}"
                        results.append((name, label, b, None, None, False, None, msg))
                        log(f"{name} {label} batch {b}: FAILED {msg}")
                    except Exception as err:  # noqa: BLE001 - report and go on
                        msg = f"{type(err).__name__}: {err}"
                        results.append((name, label, b, None, None, False, None, msg))
                        log(f"{name} {label} batch {b}: FAILED {msg}")
    finally:
        server.stop()
        log(f"server stopped (exit {server.proc.returncode})")

    log("\n== summary ==")
    for name in FAMILIES:
        i = infos[name]
        log(f"{name}: {i['bytes']:,} bytes, opsets {i['opsets']}, {i['nodes']} nodes, "
            f"ops {sorted(i['ops'])}")
    for f in load_events(out / "engine.log"):
        if f.get("message") == "model loaded":
            extra = {k: v for k, v in f.items()
                     if k not in ("timestamp", "level", "message", "target", "model")}
            log(f"engine log: model loaded {f.get('model')} at {f.get('timestamp')}: {extra}")
        else:
            log(f"engine log: {f.get('level')} {f.get('message')} {f.get('model', '')} "
                f"at {f.get('timestamp')}")
    log(f"{'family':<20} {'path':<14} {'batch':>5} {'max |diff|':>12} {'scaled':>10} "
        f"{'f32-identical':>14}  result")
    for name, label, b, d, s, ok, same, err in results:
        if err:
            log(f"{name:<20} {label:<14} {b:>5} {'-':>12} {'-':>10} {'-':>14}  FAILED: {err}")
        else:
            log(f"{name:<20} {label:<14} {b:>5} {d:>12.3g} {s:>10.3g} {same:>14}  "
                f"{'ok' if ok else 'MISMATCH'}")
    failed = [r for r in results if not r[5]]
    expected = len(FAMILIES) * len(BATCH_SIZES) * 2
    for d in degenerate:
        log(f"FAIL: degenerate reference logits (< {MIN_LOGIT_SCALE:g}): {d}")
    if failed or degenerate or len(results) != expected:
        log(f"FAIL: {len(failed)} of {len(results)} checks failed (expected {expected}), "
            f"{len(degenerate)} degenerate reference(s)")
        return 1
    log(f"PASS: all {len(results)} checks within {TOLERANCE:g} (absolute, relative for |x|>1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
