"""End-to-end forecasters through the servers, for side-by-side timing with the bare engine.

Each ``start_*`` launches a real server process and returns a callable that sends one
window and waits for its answer, plus a ``close``. The benchmark process is the client.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import orjson

from ..errors import BenchmarkError, ServerStartError

T = TypeVar("T")


def _pipe(stream: T | None) -> T:
    """A subprocess pipe that was asked for (``subprocess.PIPE``), hence never None."""
    if stream is None:
        raise ServerStartError("the server's pipe was not opened")
    return stream


class JsonLinesClient:
    """Writes a request line to ``ovcast serve --mode jsonl`` and reads the answer."""

    def __init__(self, model_dir: str | Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ovcast",
                "-q",
                "serve",
                "--mode",
                "jsonl",
                "--model",
                str(model_dir),
                "--ready-line",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._stdin, self._stdout = _pipe(self.proc.stdin), _pipe(self.proc.stdout)
        ready = orjson.loads(self._stdout.readline())
        if ready.get("event") != "ready":
            raise ServerStartError(f"jsonl server did not start: {ready}")
        self._next = 0

    def __call__(self, window: np.ndarray) -> np.ndarray:
        self._next += 1
        line = (
            orjson.dumps(
                {"request_id": self._next, "past_values": window}, option=orjson.OPT_SERIALIZE_NUMPY
            )
            + b"\n"
        )
        self._stdin.write(line)
        self._stdin.flush()
        answer = orjson.loads(self._stdout.readline())
        return np.asarray(answer["predictions"], np.float32)

    def close(self) -> None:
        self._stdin.close()
        self.proc.wait(timeout=30)


class HttpServerProcess:
    """``ovcast serve --mode http`` on a free loopback port."""

    def __init__(self, model_dir: str | Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ovcast",
                "serve",
                "--mode",
                "http",
                "--model",
                str(model_dir),
                "--port",
                "0",
                *extra,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 120
        self.port = 0
        stderr = _pipe(self.proc.stderr)
        while not self.port and time.time() < deadline:
            line = stderr.readline()
            if not line:
                raise ServerStartError("http server exited before it was ready")
            if "ready model=" in line:
                self.port = int(line.rsplit(":", 1)[1])
                self.model = line.split("ready model=")[1].split()[0]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def http_caller(server: HttpServerProcess, *, binary: bool) -> Callable[[np.ndarray], np.ndarray]:
    """One keep-alive connection; KServe v2 JSON or binary tensors."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    path = f"/v2/models/{server.model}/infer"

    def call(window: np.ndarray) -> np.ndarray:
        batch = window[None] if window.ndim == 2 else window
        if binary:
            raw = batch.astype("<f4").tobytes()
            header = orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "past_values",
                            "shape": list(batch.shape),
                            "datatype": "FP32",
                            "parameters": {"binary_data_size": len(raw)},
                        }
                    ],
                    "outputs": [
                        {"name": "prediction_outputs", "parameters": {"binary_data": True}}
                    ],
                }
            )
            conn.request(
                "POST", path, header + raw, {"Inference-Header-Content-Length": str(len(header))}
            )
        else:
            body = orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "past_values",
                            "shape": list(batch.shape),
                            "datatype": "FP32",
                            "data": batch.reshape(-1),
                        }
                    ]
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            conn.request("POST", path, body)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise BenchmarkError(f"HTTP {response.status}: {data[:200]!r}")
        if binary:
            length = int(response.getheader("Inference-Header-Content-Length") or 0)
            return np.frombuffer(data[length:], "<f4")
        return np.asarray(orjson.loads(data)["outputs"][0]["data"], np.float32)

    return call
