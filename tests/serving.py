"""Helpers of the serving tests: servers on loopback (in-process or as processes) and clients."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import orjson

from ovcast.serve.config import HttpConfig, ServiceConfig
from ovcast.serve.core import ForecastService
from ovcast.serve.http import HttpFrontEnd
from ovcast.serve.repository import Repository, parse_model_option


@contextmanager
def http_server(*models: str, repository=None, http: HttpConfig | None = None, **service):
    """An in-process HTTP server on 127.0.0.1:<free port>; yields (front end, port)."""
    svc = ForecastService(
        Repository([parse_model_option(str(m)) for m in models], repository),
        ServiceConfig(**service),
    )
    front = HttpFrontEnd(svc, http or HttpConfig(port=0))
    server = front.start()
    try:
        yield front, server.port
    finally:
        server.stop()
        svc.close()


def request(port: int, method: str, path: str, body: bytes | None = None, headers=None):
    """One request on a fresh connection: (status, parsed JSON or raw bytes, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    kind = response.getheader("content-type") or ""
    return response.status, json.loads(data) if "json" in kind else data, response


def infer_body(shape, data=None, name="past_values", datatype="FP32", **fields) -> bytes:
    import numpy as np

    data = np.zeros(shape).tolist() if data is None else data
    inputs = [{"name": name, "shape": shape, "datatype": datatype, "data": data}]
    return orjson.dumps({"inputs": inputs, **fields})


def start_process(*args: str, stdin=None, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ovcast", "serve", *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=stdin is None,
        env=env,
    )


def http_process(*args: str, env=None) -> tuple[subprocess.Popen, int]:
    """``ovcast serve --mode http`` as a process on a free port, once it is ready."""
    proc = start_process("--mode", "http", "--port", "0", *args, env=env)
    deadline = time.monotonic() + 120
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if "ready model=" in line:
            # Drained from now on: a full pipe would stall the server at its next log line.
            lines = proc.log_lines = LogLines(proc.stderr)  # type: ignore[attr-defined]
            proc.log, proc.log_reader = lines.lines, lines._reader  # type: ignore[attr-defined]
            return proc, int(line.rsplit(":", 1)[1])
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("server did not get ready:\n" + "".join(seen)[-3000:])


class LogLines:
    """A process's stderr lines, read as they come; ``wait_for`` blocks (bounded) until one
    contains a text: how the signal tests know what the server is doing before they act."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for raw in stream:
            with self._new:
                self.lines.append(raw.decode(errors="replace") if isinstance(raw, bytes) else raw)
                self._new.notify_all()

    def wait_for(self, text: str, timeout: float = 120) -> None:
        with self._new:
            found = self._new.wait_for(lambda: any(text in line for line in self.lines), timeout)
        assert found, f"no {text!r} in the log:\n" + "".join(self.lines)[-3000:]

    def text(self) -> str:
        self._reader.join(timeout=30)
        return "".join(self.lines)


def model_copies(root, package, count: int):
    """A repository of ``count`` copies of ``package`` (m1, m2, ...): a start-up that takes a
    while, for signals to land in."""
    import shutil

    for k in range(1, count + 1):
        shutil.copytree(package, root / f"m{k}" / "1")
    return root


def jsonl_line(request_id, window=None, **fields) -> bytes:
    payload = {"request_id": request_id, **fields}
    if window is not None:
        payload["past_values"] = window
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


class JsonLinesProcess:
    """``ovcast serve --mode jsonl`` with a request/answer call, for line-by-line tests."""

    def __init__(self, *args: str) -> None:
        self.proc = start_process("--mode", "jsonl", "--ready-line", *args, stdin=subprocess.PIPE)
        self.ready = json.loads(self.proc.stdout.readline() or b"{}")
        assert self.ready.get("event") == "ready", self.proc.stderr.read().decode()[-2000:]

    def send(self, line: bytes) -> dict:
        self.proc.stdin.write(line)
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> int:
        self.proc.stdin.close()
        code = self.proc.wait(timeout=60)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code
