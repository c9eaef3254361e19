"""Start and stop the real servers that the V2 tests talk to: the engine and MLServer.

Standard library only, so it runs in either venv of tests/v2 (the client one for the tests, the
MLServer one for mlserver_bench.py).

`Engine` runs `target/debug/inference-engine serve` on two free loopback ports (HTTP and
`GRPC_PORT`) with a clean environment (only PATH and the variables below; its working directory
is a temp dir, so no `.env` or `./engine.toml` of the repository applies), an empty engine.toml
(no routing rules), SQLite in the temp dir, and the test keys `test-key` (tenant_a: predict,
read_models) and `admin-test` (ops: admin). It is ready when its JSON log on stdout has had both
a line whose `message` is `listening` and one whose `message` is `grpc listening` (60 s
deadline); if the process exits first, the error carries its stderr.

`MLServer` runs `mlserver start` on a model folder with its own settings.json (free HTTP and gRPC
ports on 127.0.0.1, `parallel_workers: 0`, metrics disabled), waits until the given models
answer ready over HTTP and the gRPC port accepts connections, and can be stopped and restarted on
the same ports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_ROOT = Path(os.environ.get("V2_VENV_ROOT", REPO / "target" / "v2-venv"))
ENGINE_BIN = Path(os.environ.get("ENGINE_BIN", REPO / "target" / "debug" / "inference-engine"))
MLSERVER_BIN = Path(os.environ.get("MLSERVER_BIN", VENV_ROOT / "mlserver" / "bin" / "mlserver"))
MLSERVER_PYTHON = MLSERVER_BIN.parent / "python"

API_KEY = "test-key"
ADMIN_KEY = "admin-test"
API_KEYS = f"{API_KEY}:tenant_a:predict,read_models;{ADMIN_KEY}:ops:admin"
START_TIMEOUT_S = 60.0


class ServerError(RuntimeError):
    """A server did not start (or stop) as expected; the message says why, with its output."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """One HTTP request with an optional JSON body: (status, parsed JSON body or the raw text)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def _tail(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


def _terminate(proc: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


class Engine:
    """The real `inference-engine serve` on free ports: a context manager, or start()/stop()."""

    def __init__(
        self,
        models_dir: Path | str | None = None,
        extra_env: dict[str, str] | None = None,
        binary: Path | str | None = None,
        engine_toml: str = "",
    ):
        self.binary = Path(binary or ENGINE_BIN)
        self.models_dir = Path(models_dir or REPO / "models").resolve()
        self.extra_env = dict(extra_env or {})
        self.engine_toml = engine_toml
        self.http_port = 0
        self.grpc_port = 0
        self.proc: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.messages: deque[dict] = deque(maxlen=2000)  # the last JSON log lines of stdout
        self._seen: dict[str, dict] = {}
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def http_address(self) -> str:
        """host:port, as tritonclient.http wants it."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """host:port, as tritonclient.grpc wants it."""
        return f"127.0.0.1:{self.grpc_port}"

    def url(self, path: str) -> str:
        return f"http://{self.http_address}{path}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(
        self,
        timeout: float = START_TIMEOUT_S,
        wait_for: tuple[str, ...] = ("listening", "grpc listening"),
    ) -> "Engine":
        if not self.binary.is_file():
            raise ServerError(
                f"{self.binary} does not exist: build it with `cargo build -p inference-engine-cli`"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="v2-engine-"))
        config = self.workdir / "engine.toml"
        config.write_text(self.engine_toml)
        self.http_port = free_port()
        self.grpc_port = free_port()
        while self.grpc_port == self.http_port:
            self.grpc_port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GRPC_PORT": str(self.grpc_port),
            "SQLITE_DB_PATH": str(self.workdir / "jobs.db"),
            "MODELS_DIR": str(self.models_dir),
            "ENGINE_CONFIG": str(config),
            "API_KEYS": API_KEYS,
            "LOG_FORMAT": "json",
            # The ONNX Runtime library scripts/install-onnxruntime.sh puts in the checkout.
            "ORT_DYLIB_PATH": os.environ.get(
                "ORT_DYLIB_PATH", str(REPO / "onnxruntime" / "libonnxruntime.so")
            ),
        }
        env.update(self.extra_env)
        self.stderr_path = self.workdir / "stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--host", "127.0.0.1", "--port", str(self.http_port)],
            env=env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                missing = [m for m in wait_for if m not in self._seen]
                if not missing:
                    break
                self._cond.wait(timeout=0.2)
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                message = (
                    f"the engine exited with code {self.proc.returncode} before logging {missing}"
                    f"\n--- stderr ---\n{_tail(self.stderr_path)}"
                    f"\n--- last stdout lines ---\n{self.stdout_tail()}"
                )
                self.stop()
                raise ServerError(message)
            if time.monotonic() > deadline:
                seen = ", ".join(sorted(self._seen)) or "nothing"
                hint = ""
                if "grpc listening" in missing and "listening" not in missing:
                    hint = (
                        " (the HTTP listener is up but no gRPC listener was logged: is the V2 "
                        f"gRPC server implemented and started on GRPC_PORT={self.grpc_port}?)"
                    )
                stderr = _tail(self.stderr_path)
                tail = self.stdout_tail()
                self.stop()
                raise ServerError(
                    f"the engine did not log {missing} within {timeout:.0f} s{hint}; "
                    f"log messages seen: {seen}\n--- stderr ---\n{stderr}"
                    f"\n--- last stdout lines ---\n{tail}"
                )
        return self

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = {"message": raw.decode(errors="replace").rstrip(), "unparsed": True}
            if not isinstance(entry, dict):
                entry = {"message": str(entry)}
            # tracing's JSON layer may nest the message under "fields"
            message = entry.get("message") or entry.get("fields", {}).get("message")
            with self._cond:
                self.messages.append(entry)
                if isinstance(message, str) and message not in self._seen:
                    self._seen[message] = entry
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_log(self, message: str, timeout: float) -> dict | None:
        """Wait (at most `timeout` s, less if the process exits) for a log line with `message`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while message not in self._seen:
                left = deadline - time.monotonic()
                if left <= 0 or not self.running():
                    break
                self._cond.wait(timeout=min(left, 0.2))
            return self._seen.get(message)

    def log_line(self, message: str) -> dict | None:
        """The first stdout log line with this `message`, if any."""
        with self._cond:
            return self._seen.get(message)

    def stdout_tail(self, n: int = 20) -> str:
        with self._cond:
            return "\n".join(json.dumps(m) for m in list(self.messages)[-n:])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the engine drains and exits 0), SIGKILL after `timeout`; the exit code."""
        code = None
        if self.proc is not None:
            code = _terminate(self.proc, timeout)
            if self._reader is not None:
                self._reader.join(timeout=5)
            self._stderr.close()
            self.proc = None
        if self.workdir is not None and not os.environ.get("V2_KEEP_TEMP"):
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        return code

    def __enter__(self) -> "Engine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- requests ----------------------------------------------------------------------------

    def predict(
        self,
        model: str,
        version: str | None,
        data: Any,
        key: str | None = API_KEY,
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """POST /predict {"model", "version", "data"}: (status, JSON body)."""
        body: dict[str, Any] = {"model": model, "data": data}
        if version is not None:
            body["version"] = version
        headers = {"X-API-Key": key} if key else {}
        return http_json("POST", self.url("/predict"), body, headers, timeout)


# --------------------------------------------------------------------------------------------
# MLServer
# --------------------------------------------------------------------------------------------


class MLServer:
    """`mlserver start FOLDER` on fixed-once free ports; stop() and start() again reuse them.

    `folder` holds one sub-folder per model with its model-settings.json (see sk_models.py);
    settings.json is (re)written into it at every start. `models` lists (name, version) pairs
    that must answer ready before start() returns.
    """

    def __init__(
        self,
        folder: Path | str,
        models: list[tuple[str, str | None]],
        http_port: int | None = None,
        grpc_port: int | None = None,
        parallel_workers: int = 0,
        binary: Path | str | None = None,
    ):
        self.folder = Path(folder).resolve()
        self.models = list(models)
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        while self.grpc_port == self.http_port:
            self.grpc_port = free_port()
        self.parallel_workers = parallel_workers
        self.binary = Path(binary or MLSERVER_BIN)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.folder / "mlserver.log"
        self.starts = 0

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def url(self, path: str) -> str:
        return f"http://{self.http_address}{path}"

    def settings(self) -> dict:
        return {
            "host": "127.0.0.1",
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "parallel_workers": self.parallel_workers,
            # No metrics server (it would need a third port) and no /metrics route.
            "metrics_endpoint": None,
            "debug": False,
        }

    def ready(self) -> bool:
        """Every model answers ready over HTTP and the gRPC port accepts connections."""
        for name, version in self.models:
            path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/ready"
            try:
                status, _ = http_json("GET", self.url(path), timeout=2)
            except OSError:
                return False
            if status != 200:
                return False
        return port_open(self.grpc_port)

    def start(self, timeout: float = START_TIMEOUT_S) -> "MLServer":
        if not self.binary.is_file():
            raise ServerError(
                f"{self.binary} does not exist: run tests/v2/run.sh to create the venv"
            )
        for port in (self.http_port, self.grpc_port):
            if port_open(port):
                raise ServerError(f"port {port} is already in use: cannot start MLServer on it")
        (self.folder / "settings.json").write_text(json.dumps(self.settings(), indent=2) + "\n")
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts} =====\n".encode())
        log.flush()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
        }
        for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS"):
            if var in os.environ:
                env[var] = os.environ[var]
        self.proc = subprocess.Popen(
            [str(self.binary), "start", str(self.folder)],
            env=env,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise ServerError(
                    f"MLServer exited with code {code} while starting\n"
                    f"--- {self.log_path} ---\n{_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(
                    f"MLServer was not ready within {timeout:.0f} s "
                    f"(models {self.models}, HTTP {self.http_port}, gRPC {self.grpc_port})\n"
                    f"--- {self.log_path} ---\n{_tail(self.log_path)}"
                )
            time.sleep(0.2)
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (SIGKILL after `timeout`); returns once it exited and its ports are closed."""
        if self.proc is None:
            return None
        code = _terminate(self.proc, timeout)
        self.proc = None
        deadline = time.monotonic() + 5
        while (
            port_open(self.http_port) or port_open(self.grpc_port)
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        return code

    def restart(self, timeout: float = START_TIMEOUT_S) -> "MLServer":
        self.stop()
        return self.start(timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "MLServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
