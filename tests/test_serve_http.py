"""The KServe v2 HTTP server, run in-process on loopback, with tritonclient as the client."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import random_windows

from ovcast.serve.http import ForecastHTTPServer, HttpConfig

tritonclient_http = pytest.importorskip("tritonclient.http", reason="needs ovcast[test]")


@pytest.fixture(scope="module", params=[1, 8], ids=["direct", "batched"])
def server(request, small_package):
    srv = ForecastHTTPServer(
        HttpConfig(
            str(small_package), port=0, max_batch_size=request.param, max_queue_delay_us=2000
        )
    )
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    srv.load()
    yield srv
    srv.shutdown()
    thread.join(timeout=10)


def client(server):
    return tritonclient_http.InferenceServerClient(f"127.0.0.1:{server.port}")


def raw(server, method: str, path: str, body: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infer(server, small_engine, binary):
    windows = random_windows(3, 64, 3, seed=2)
    inputs = tritonclient_http.InferInput("past_values", list(windows.shape), "FP32")
    inputs.set_data_from_numpy(windows, binary_data=binary)
    outputs = [tritonclient_http.InferRequestedOutput("prediction_outputs", binary_data=binary)]
    result = client(server).infer("small", [inputs], outputs=outputs, request_id="r-7")
    np.testing.assert_allclose(
        result.as_numpy("prediction_outputs"), small_engine.predict(windows), atol=1e-5
    )
    assert result.get_response()["id"] == "r-7"


def test_metadata_and_health(server):
    c = client(server)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("small")
    meta = c.get_model_metadata("small")
    assert meta["inputs"] == [{"name": "past_values", "datatype": "FP32", "shape": [-1, 64, 3]}]
    assert meta["outputs"][0]["shape"] == [-1, 16, 3]
    assert c.get_model_metadata("small", model_version="1")["name"] == "small"


def infer_body(shape, data=None, name="past_values", datatype="FP32"):
    data = np.zeros(shape).tolist() if data is None else data
    return json.dumps(
        {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}
    ).encode()


BINARY_HEADER = json.dumps(
    {
        "inputs": [
            {
                "name": "past_values",
                "shape": [1, 64, 3],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 768},
            }
        ]
    }
).encode()
ERRORS = [
    ("POST", "/v2/models/other/infer", infer_body([1, 64, 3]), {}, 404, "unknown model"),
    (
        "POST",
        "/v2/models/small/versions/2/infer",
        infer_body([1, 64, 3]),
        {},
        404,
        "unknown version",
    ),
    ("GET", "/v2/models/other", None, {}, 404, "unknown model"),
    ("GET", "/v2/nowhere", None, {}, 404, "no route"),
    ("POST", "/v2/models/small/infer", b"{not json", {}, 400, "not valid JSON"),
    ("POST", "/v2/models/small/infer", b"[1]", {}, 400, "inputs"),
    ("POST", "/v2/models/small/infer", infer_body([1, 63, 3]), {}, 400, "expected [batch, 64, 3]"),
    ("POST", "/v2/models/small/infer", infer_body([1, 64, 3], name="x"), {}, 400, "unknown input"),
    (
        "POST",
        "/v2/models/small/infer",
        infer_body([1, 64, 3], datatype="INT64"),
        {},
        400,
        "expected 'FP32'",
    ),
    (
        "POST",
        "/v2/models/small/infer",
        infer_body([1, 64, 3], data=[1.0] * 10),
        {},
        400,
        "needs 192",
    ),
    (
        "POST",
        "/v2/models/small/infer",
        infer_body([1, 64, 3], data=["a"] * 192),
        {},
        400,
        "must be numbers",
    ),
    (
        "POST",
        "/v2/models/small/infer",
        infer_body([2, 64, 3], data=[1e39] * 384),
        {},
        400,
        "NaN or inf",
    ),
    (
        "POST",
        "/v2/models/small/infer",
        BINARY_HEADER + b"\0" * 100,  # 768 bytes promised, 100 sent
        {"Inference-Header-Content-Length": str(len(BINARY_HEADER))},
        400,
        "binary_data_size",
    ),
    (
        "POST",
        "/v2/models/small/infer",
        b"{}",
        {"Inference-Header-Content-Length": "999"},
        400,
        "does not fit",
    ),
    (
        "POST",
        "/v2/models/small/infer",
        b"{}",
        {"Inference-Header-Content-Length": "x"},
        400,
        "integer",
    ),
]


@pytest.mark.parametrize("method, path, body, headers, status, message", ERRORS)
def test_error_paths(server, method, path, body, headers, status, message):
    code, data = raw(server, method, path, body, headers)
    assert code == status
    assert message in json.loads(data)["error"]
    assert raw(server, "GET", "/v2/health/ready")[0] == 200  # still serving


def test_concurrent_load_every_response_present_and_correct(server, small_engine):
    windows = random_windows(16, 64, 3, seed=9)
    expected = small_engine.predict(windows)
    failures: list[str] = []

    def worker(k: int) -> None:
        c = tritonclient_http.InferenceServerClient(f"127.0.0.1:{server.port}")
        for i in range(30):
            j = (k * 7 + i) % len(windows)
            inp = tritonclient_http.InferInput("past_values", [1, 64, 3], "FP32")
            inp.set_data_from_numpy(windows[j : j + 1], binary_data=i % 2 == 0)
            out = c.infer("small", [inp]).as_numpy("prediction_outputs")
            if not np.allclose(out[0], expected[j], atol=1e-5):
                failures.append(f"client {k} request {i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures
    status, body = raw(server, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and 'ovcast_requests_total{outcome="success"}' in text
    assert "ovcast_batch_size_bucket" in text and "ovcast_queue_duration_seconds" in text


def test_overload_answers_503(small_package):
    srv = ForecastHTTPServer(HttpConfig(str(small_package), port=0, max_queue_size=1))
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    assert raw(srv, "GET", "/v2/health/ready")[0] == 503  # live, not ready before load
    assert raw(srv, "GET", "/v2/health/live")[0] == 200
    srv.load()
    srv._slots.acquire()  # the one slot is busy
    try:
        status, data = raw(srv, "POST", "/v2/models/small/infer", infer_body([1, 64, 3]))
        assert status == 503 and "overloaded" in json.loads(data)["error"]
    finally:
        srv._slots.release()
    assert raw(srv, "POST", "/v2/models/small/infer", infer_body([1, 64, 3]))[0] == 200
    srv.shutdown()


def test_sigterm_finishes_in_flight_then_exits(small_package):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ovcast",
            "serve",
            "--mode",
            "http",
            "--model",
            str(small_package),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    port = None
    deadline = time.time() + 60
    while port is None and time.time() < deadline:
        line = proc.stderr.readline()
        if "ready model=" in line:
            port = int(line.rsplit(":", 1)[1])
    assert port
    results = []

    def slow_client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/v2/models/small/infer", infer_body([256, 64, 3]))
        results.append(conn.getresponse().status)

    threads = [threading.Thread(target=slow_client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=60)
    assert proc.wait(timeout=60) == 0
    assert all(status == 200 for status in results), results  # nothing accepted was lost


def test_a_busy_port_is_one_clear_line_not_a_traceback(market_package):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in (
            ["serve", "--mode", "http", "--model", str(market_package), "--port", str(port)],
            [
                "replay",
                "--demo",
                "--model",
                str(market_package),
                "--dashboard",
                f"127.0.0.1:{port}",
            ],
        ):
            result = subprocess.run(
                [sys.executable, "-m", "ovcast", *command],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 1, result.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
            assert "Traceback" not in result.stderr
