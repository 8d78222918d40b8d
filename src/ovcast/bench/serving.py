"""End-to-end forecasters through the servers, for side-by-side timing with the bare engine.

Each client class launches a real server process; a call sends one window and waits for
its answer. The benchmark process is the client.

Before and after a serving change, in one run (the serving part of docs/PERFORMANCE.md):

    python -m ovcast.bench.serving models/default --before /tmp/before/src --duration 20 \
        --json docs/serving.json --report docs/PERFORMANCE.md

``--before`` is the ``src`` folder of another ovcast checkout (``git archive COMMIT src``);
its servers run on the same machine, interleaved call by call with today's and the bare
engine, so drift hits all alike.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..errors import BenchmarkError

log = logging.getLogger(__name__)


def _environment(source: str | Path | None) -> dict[str, str] | None:
    """The environment of a server process that runs the ovcast found in ``source``."""
    if source is None:
        return None
    return {**os.environ, "PYTHONPATH": str(Path(source).resolve())}


class JsonLinesClient:
    """Writes a request line to ``ovcast serve --mode jsonl`` and reads the answer; with
    ``binary``, windows and forecasts travel as base64 float32 (as the C++ client sends)."""

    def __init__(
        self, model_dir: str | Path, *, source: str | Path | None = None, binary: bool = False
    ) -> None:
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
            env=_environment(source),
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        ready = orjson.loads(self.stdout.readline() or b"{}")
        if ready.get("event") != "ready":
            raise BenchmarkError(f"jsonl server did not start: {ready}")
        self._next = 0
        self.binary = binary

    def __call__(self, window: np.ndarray) -> np.ndarray:
        self._next += 1
        request: dict[str, Any] = {"request_id": self._next, "past_values": window}
        if self.binary:
            data = np.ascontiguousarray(window, "<f4")
            request["past_values"] = {
                "base64": base64.b64encode(data.tobytes()).decode("ascii"),
                "shape": list(data.shape),
            }
            request["response_encoding"] = "base64"
        line = orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        self.stdin.write(line)
        self.stdin.flush()
        answer = orjson.loads(self.stdout.readline())
        predictions = answer["predictions"]
        if isinstance(predictions, dict):
            raw = base64.b64decode(predictions["base64"])
            return np.frombuffer(raw, "<f4").reshape(predictions["shape"])
        return np.asarray(predictions, np.float32)

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(timeout=30)


class HttpServerProcess:
    """``ovcast serve --mode http`` on a free loopback port."""

    def __init__(
        self, model_dir: str | Path, *extra: str, source: str | Path | None = None
    ) -> None:
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
            env=_environment(source),
        )
        assert self.proc.stderr is not None
        stderr = self.proc.stderr
        deadline = time.time() + 120
        self.port = 0
        while not self.port and time.time() < deadline:
            line = stderr.readline()
            if not line:
                raise BenchmarkError("http server exited before it was ready")
            if "ready model=" in line:
                self.port = int(line.rsplit(":", 1)[1])
                self.model = line.split("ready model=")[1].split()[0]
        # Keep reading its log: a full pipe would stall the server at its next log line.
        threading.Thread(target=stderr.read, daemon=True).start()

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
            body, headers = binary_infer_request(batch, binary_output=True)
            conn.request("POST", path, body, headers)
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
            conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise BenchmarkError(f"HTTP {response.status}: {data[:200]!r}")
        if binary:
            length = int(response.getheader("Inference-Header-Content-Length", "0"))
            return np.frombuffer(data[length:], "<f4")
        return np.asarray(orjson.loads(data)["outputs"][0]["data"], np.float32)

    return call


def binary_infer_request(batch: np.ndarray, *, binary_output: bool) -> tuple[bytes, dict[str, str]]:
    """A KServe v2 request of ``past_values`` as a binary tensor (little-endian float32): its
    body and headers; ``binary_output`` asks for the forecast as a binary tensor too."""
    raw = batch.astype("<f4").tobytes()
    request: dict[str, Any] = {
        "inputs": [
            {
                "name": "past_values",
                "shape": list(batch.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    }
    if binary_output:
        request["outputs"] = [{"name": "prediction_outputs", "parameters": {"binary_data": True}}]
    header = orjson.dumps(request)
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


# -- before and after, in one run ---------------------------------------------------------
BLOCK, SETTLE = 10, 2
SECTION_START = "<!-- serving: written by python -m ovcast.bench.serving -->"
SECTION_END = "<!-- /serving -->"


def compare(
    model_dir: str | Path, *, before: str | Path | None, duration_s: float
) -> dict[str, Any]:
    """Batch-1 latency of the bare engine and of every front end, now and (optionally) before."""
    from ..parity import parity_windows
    from ..runtime.engine import Engine
    from .machine import describe
    from .timing import LatencyStats, alternate

    engine = Engine(model_dir)
    m = engine.package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)[0]
    expected = engine.predict(window)
    stacks = {"after": None, **({"before": before} if before is not None else {})}
    servers: list[JsonLinesClient | HttpServerProcess] = []
    runners: dict[str, Callable[[], object]] = {"engine.predict": lambda: engine.predict(window)}
    try:
        for stack, source in stacks.items():
            jsonl = JsonLinesClient(model_dir, source=source)
            http = HttpServerProcess(model_dir, source=source)
            servers += [jsonl, http]
            calls: dict[str, Callable[[np.ndarray], np.ndarray]] = {
                "jsonl pipe": jsonl,
                "http binary": http_caller(http, binary=True),
                "http json": http_caller(http, binary=False),
            }
            for path, call in calls.items():
                answer = np.asarray(call(window)).reshape(expected.shape)
                if not np.allclose(answer, expected, atol=1e-4):
                    raise BenchmarkError(f"{path} ({stack}) answers differently from the engine")
                runners[f"{path} ({stack})"] = partial(call, window)
        log.info("serving: %d paths alternating for %.0f s", len(runners), duration_s)
        # Blocks of calls, the first ones after a switch untimed: the previous server's
        # OpenVINO threads may still be spinning on the 2 cores (as in ovcast bench). Half
        # the time in one order and half in the reverse, so no path always follows another.
        names = list(runners)
        orders = [names, [names[0], *reversed(names[1:])]]
        halves = [
            alternate(
                {n: runners[n] for n in order},
                duration_s=duration_s / 2,
                block=BLOCK,
                settle=SETTLE,
            )
            for order in orders
        ]
        stats = {
            n: LatencyStats(n, np.concatenate([h[n].samples_ms for h in halves])) for n in names
        }
    finally:
        for server in servers:
            server.close()
    base = stats["engine.predict"].p50
    return {
        "machine": describe(),
        "model": {"name": m.name, "context_length": m.context_length,
                  "num_input_channels": m.num_input_channels,
                  "prediction_length": m.prediction_length},
        "before": str(before) if before is not None else None,
        "duration_s": duration_s,
        "paths": {n: {**s.to_dict(), "p50_ratio_to_engine": s.p50 / base} for n, s in stats.items()},
    }  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    """The serving section of docs/PERFORMANCE.md."""
    machine, model = results["machine"], results["model"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    lines = [
        SECTION_START,
        "## End to end through the servers (batch 1), before and after the ASGI core",
        "",
        f"Generated by `python -m ovcast.bench.serving MODEL --before OLD/src --duration "
        f"{results['duration_s']:g}`: the bare engine and every front end of both stacks called "
        f"in alternation (blocks of {BLOCK} calls, the first {SETTLE} after a switch untimed) "
        "from one client process on one machine. *before*: the hand-written `http.server` "
        "stack and the old JSON-lines loop; *after*: the transport-free core behind Starlette + "
        "uvicorn (httptools, uvloop) and the new JSON-lines loop. One keep-alive connection, "
        "one window per request.",
        "",
        f"- CPU: {machine['cpu']} (family/model {machine['cpu_family_model']}), "
        f"{machine['usable_cores']} usable cores; kernel {machine['kernel']}",
        f"- {versions}; starlette {_version('starlette')}, uvicorn {_version('uvicorn')}, "
        f"httptools {_version('httptools')}, uvloop {_version('uvloop')}",
        f"- model: {model['name']}, context {model['context_length']} x "
        f"{model['num_input_channels']}, horizon {model['prediction_length']}",
        "",
        "| path | calls | p50 ms | p95 ms | p99 ms | p50 / engine p50 |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in results["paths"].items():
        lines.append(
            f"| {name} | {s['n']} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {s['p99_ms']:.2f} | "
            f"{s['p50_ratio_to_engine']:.2f}x |"
        )
    lines += ["", SECTION_END]
    return "\n".join(lines)


def write_section(path: str | Path, section: str) -> None:
    """Put ``section`` into the page in place of the previous one (or the old serving table)."""
    page = Path(path).read_text()
    if SECTION_START in page:
        head, rest = page.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1]
    else:
        marker = "## End to end through the servers (batch 1)"
        head, rest = page.split(marker, 1)
        tail = rest[rest.index("\n## ") :]
    Path(path).write_text(head + section + "\n\n" + tail.lstrip("\n"))


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ovcast.bench.serving",
        description="Serving overhead against the bare engine, today's stack and optionally "
        "another checkout's, interleaved in one run.",
    )
    parser.add_argument("model", help="model package folder")
    parser.add_argument("--before", metavar="SRC", help="src/ folder of the ovcast to compare")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of alternation")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--report", metavar="PAGE", help="update the serving section of PAGE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = compare(args.model, before=args.before, duration_s=args.duration)
    section = markdown(results)
    print(section)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.report:
        write_section(args.report, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
