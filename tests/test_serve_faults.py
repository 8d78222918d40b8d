"""The fault suite: the HTTP attacks and accidents measured against the old stack, on loopback.

Bounded in count and time; no sleeps waiting for a signal to land (a process is waited on
with a limit instead), and no wall-clock assertions beyond "it answered / it exited".
"""

from __future__ import annotations

import http.client
import re
import signal
import socket
import threading

import numpy as np
import orjson
import pytest
from conftest import random_windows
from serving import (
    JsonLinesProcess,
    LogLines,
    http_process,
    http_server,
    infer_body,
    jsonl_line,
    model_copies,
    request,
    start_process,
)

from ovcast.serve.asgi import AsgiServer, listen
from ovcast.serve.config import HttpConfig
from ovcast.serve.core import ForecastService
from ovcast.serve.http import HttpFrontEnd, public_message
from ovcast.serve.repository import Repository, parse_model_option

INFER = "/v2/models/small/infer"


@pytest.fixture(scope="module")
def served(small_package):
    with http_server(small_package, max_request_batch=4) as (front, port):
        yield front, port


def raw_exchange(port: int, data: bytes, *, read_s: float = 10.0) -> bytes:
    """Send raw bytes on one connection and read until the server closes it (or read_s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_s) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


# -- malformed fields: 400 naming what was expected, never 500 ------------------------------
BINARY_HEADER = orjson.dumps(
    {"inputs": [{"name": "past_values", "shape": [1, 64, 3], "datatype": "FP32",
                 "parameters": {"binary_data_size": 768}}]}
)  # fmt: skip
FLOAT_SIZE = BINARY_HEADER.replace(b"768", b"768.0")
OVERFLOW = orjson.dumps(
    {"inputs": [{"name": "past_values", "shape": [2**32, 2**32], "datatype": "FP32",
                 "parameters": {"binary_data_size": 0}}]}
)  # fmt: skip
MALFORMED = [
    ("not json", b"{not json", {}, "invalid_json", "not valid JSON"),
    ("not an object", b"[1]", {}, "invalid_request", "expected a JSON object"),
    ("no inputs", b"{}", {}, "invalid_request", "'inputs' must be a non-empty list"),
    ("boolean in shape", infer_body([True, 64, 3], np.zeros(192).tolist()), {}, "invalid_request",
     "'shape' must be a list of non-negative integers"),
    ("parameters a list", infer_body([1, 64, 3], parameters=[1]), {}, "invalid_request",
     "'parameters' must be an object"),
    ("outputs of strings", infer_body([1, 64, 3], outputs=["x"]), {}, "invalid_request",
     "must be an object naming one of ['prediction_outputs']"),
    ("unknown output", infer_body([1, 64, 3], outputs=[{"name": "y"}]), {}, "invalid_request",
     "naming one of"),
    ("float binary size", FLOAT_SIZE + b"\0" * 768,
     {"Inference-Header-Content-Length": str(len(FLOAT_SIZE))}, "invalid_request",
     "binary_data_size must be a non-negative integer"),
    ("id not a string", infer_body([1, 64, 3], id=5), {}, "invalid_request", "'id' must be a string"),
    ("unknown input", infer_body([1, 64, 3], name="x"), {}, "invalid_request", "unknown input 'x'"),
    ("datatype", infer_body([1, 64, 3], datatype="INT64"), {}, "invalid_request", "expected 'FP32'"),
    ("too few values", infer_body([1, 64, 3], data=[1.0] * 10), {}, "invalid_input", "needs 192"),
    ("binary too short", BINARY_HEADER + b"\0" * 100,
     {"Inference-Header-Content-Length": str(len(BINARY_HEADER))}, "invalid_request",
     "runs past the end"),
    ("binary too long", BINARY_HEADER + b"\0" * 800,
     {"Inference-Header-Content-Length": str(len(BINARY_HEADER))}, "invalid_request",
     "add up to 768"),
    ("header length past the body", b"{}", {"Inference-Header-Content-Length": "999"},
     "invalid_request", "must be an integer from 1"),
    ("header length not a number", b"{}", {"Inference-Header-Content-Length": "x"},
     "invalid_request", "must be an integer from 1"),
    # attack13 finding 8: these were plain-text 500s, missing from the metrics
    ("header length a superscript digit", BINARY_HEADER + b"\0" * 768,
     {"Inference-Header-Content-Length": "\u00b2"}, "invalid_request", "must be an integer from 1"),
    ("binary shape overflowing int64", OVERFLOW, {"Inference-Header-Content-Length": str(len(OVERFLOW))},
     "invalid_request", "needs 73786976294838206464"),
    ("json shape overflowing int64", infer_body([2**32, 2**32], data=[]), {}, "invalid_input",
     "needs 18446744073709551616"),
    ("shape beyond 2**63", infer_body([2**63 + 5], data=[1.0]), {}, "invalid_input",
     "needs 9223372036854775813"),
    # attack13 finding 2: small requests asking for huge answers
    ("channels repeated", infer_body([1, 64, 3], parameters={"channels": [0] * 5000}), {},
     "invalid_input", "channels repeat index 0 (5000 given)"),
    ("outputs repeated", infer_body([1, 64, 3], outputs=[{"name": "prediction_outputs"}] * 500),
     {}, "invalid_request", "asks for 'prediction_outputs' again"),
]  # fmt: skip


@pytest.mark.parametrize(
    "body, headers, code, message", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_every_malformed_field_is_a_400_naming_what_was_expected(
    served, body, headers, code, message
):
    status, answer, _ = request(served[1], "POST", INFER, body, headers)
    assert status == 400 and answer["code"] == code, answer
    assert message in answer["error"], answer["error"]
    assert request(served[1], "POST", INFER, infer_body([1, 64, 3]))[0] == 200  # still serving


# -- framing, caps and overload -------------------------------------------------------------
def test_a_post_without_length_cannot_smuggle_a_second_request(served):
    smuggled = b"POST /v2/repository/models/small/unload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    for head in (
        b"POST /v2/models/small/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # no Content-Length
        b"POST /v2/models/small/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
    ):
        reply = raw_exchange(served[1], head + smuggled)
        assert reply.startswith((b"HTTP/1.1 411", b"HTTP/1.1 400")), reply[:200]
        assert reply.count(b"HTTP/1.1 ") == 1  # one answer, then the connection closed
    assert served[0].service.models() == {"small": ["1"]}  # the unload never ran


def test_the_length_is_checked_before_the_model_the_key_or_the_host(small_package):
    """With the model looked up before the size (an unloaded model is 404, not 413), a POST
    without a length must still be refused first, or what follows it is a second request."""
    smuggled = b"POST /v2/repository/models/small/unload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    smuggled += b"Content-Length: 0\r\n\r\n"
    with http_server(small_package, http=HttpConfig(port=0, api_key="k")) as (front, port):
        for target, host in (("nope", "127.0.0.1"), ("small", "127.0.0.1"), ("small", "e.x")):
            head = f"POST /v2/models/{target}/infer HTTP/1.1\r\nHost: {host}\r\n\r\n"
            reply = raw_exchange(port, head.encode() + smuggled)
            assert reply.count(b"HTTP/1.1 ") == 1, reply  # one answer, then closed
        assert front.service.models() == {"small": ["1"]}


def test_a_body_over_the_cap_is_refused_from_its_length_before_it_is_read(served):
    cap = served[0].service.max_request_bytes
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {57 * 2**20}\r\n\r\n".encode()
    )
    reply = raw_exchange(served[1], head)  # the 57 MiB never come: the answer cannot wait for them
    assert reply.startswith(b"HTTP/1.1 413") and b"connection: close" in reply.lower()
    assert f"cap of {cap} bytes".encode() in reply
    chunked = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    big = b"%x\r\n%s\r\n" % (cap + 10, b"1" * (cap + 10))
    assert raw_exchange(served[1], chunked + big + b"0\r\n\r\n").startswith(b"HTTP/1.1 413")


def test_overload_answers_503_without_reading_the_body(small_package):
    with http_server(small_package, max_queue_size=1) as (front, port):
        with front.service.admit():  # the one place is taken
            head = f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n".encode()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(head)  # and no body: only an answer that does not read it can come
                reply = b""
                while b'"}' not in reply:
                    reply += sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 503") and b'"code":"overloaded"' in reply
        assert request(port, "POST", INFER, infer_body([1, 64, 3]))[0] == 200


def test_64_simultaneous_connects_all_answered(served):
    barrier = threading.Barrier(64)
    results: list[object] = []

    def connect() -> None:
        barrier.wait(timeout=30)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", served[1], timeout=30)
            conn.request("GET", "/v2/health/ready")
            results.append(conn.getresponse().status)
            conn.close()
        except OSError as exc:
            results.append(exc)

    threads = [threading.Thread(target=connect) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [200] * 64


def test_responses_go_out_without_nagle_delay(served):
    """Headers and body in two writes must not wait for the client's delayed ACK (~40 ms)."""
    conn = http.client.HTTPConnection("127.0.0.1", served[1], timeout=10)
    conn.request("GET", "/v2/health/live")
    conn.getresponse().read()  # the connection is open on the server side now
    try:
        sockets = [c.transport.get_extra_info("socket") for c in served[0].server.connections]
        open_sockets = [s for s in sockets if s.fileno() >= 0]
        assert open_sockets and all(
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in open_sockets
        )
    finally:
        conn.close()


# -- safe by default ------------------------------------------------------------------------
def test_model_control_is_by_name_only(served):
    port = served[1]
    status, answer, _ = request(
        port, "POST", "/v2/repository/models/small/load",
        orjson.dumps({"parameters": {"model_dir": "/etc"}}),
    )  # fmt: skip
    assert status == 400 and "from the repository root only" in answer["error"]
    for name in ("..", ".hidden", "a%20b"):
        status, answer, _ = request(port, "POST", f"/v2/repository/models/{name}/load", b"")
        assert status == 404, (name, answer)
    status, answer, _ = request(port, "POST", "/v2/repository/models/%2Fetc%2Fpasswd/load", b"")
    assert status == 404


def test_model_control_is_off_on_a_non_loopback_address_unless_allowed(small_package):
    service = ForecastService(Repository([parse_model_option(str(small_package))]))
    service.start()
    for allowed, expected in ((False, 403), (True, 200)):
        front = HttpFrontEnd(service, HttpConfig(host="10.1.2.3", allow_model_control=allowed))
        server = AsgiServer(front, listen("127.0.0.1", 0, what="test"))  # loopback in truth
        server.start()
        try:
            status, answer, _ = request(
                server.port, "POST", "/v2/repository/models/small/load", b""
            )
            assert status == expected, answer
            if not allowed:
                assert answer["code"] == "model_control_disabled"
                assert "--allow-model-control" in answer["error"]
        finally:
            server.stop()
    service.close()


@pytest.mark.parametrize(
    "headers, status, code",
    [
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/octet-stream"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/json", "Origin": "https://evil.example"}, 403,
         "cross_origin_refused"),
        ({"Origin": "null"}, 403, "cross_origin_refused"),
    ],
)  # fmt: skip
def test_no_cross_site_simple_post_reaches_the_api(served, headers, status, code):
    for path in (INFER, "/v2/repository/models/small/load", "/v2/repository/index"):
        got, answer, _ = request(served[1], "POST", path, infer_body([1, 64, 3]), headers)
        assert (got, answer["code"]) == (status, code)
    ok = {"Content-Type": "application/json; charset=utf-8"}
    assert request(served[1], "POST", INFER, infer_body([1, 64, 3]), ok)[0] == 200


def test_api_key_guards_every_route_but_health(small_package):
    with http_server(small_package, http=HttpConfig(port=0, api_key="s3cret")) as (_, port):
        assert request(port, "GET", "/v2/health/live")[0] == 200
        assert request(port, "GET", "/v2/health/ready")[0] == 200
        for method, path, body in (
            ("GET", "/v2/models/small", None),
            ("GET", "/metrics", None),
            ("POST", INFER, infer_body([1, 64, 3])),
            ("POST", "/v2/repository/index", b""),
        ):
            status, answer, response = request(port, method, path, body)
            assert status == 401 and response.getheader("www-authenticate") == "Bearer"
            wrong = {"Authorization": "Bearer s3cre"}
            assert request(port, method, path, body, wrong)[0] == 401
            for good in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
                assert request(port, method, path, body, good)[0] == 200, (path, good)


def test_remote_errors_name_no_filesystem_paths():
    message = "reload refused, still serving /srv/models/x: no model package at /srv/m/1 (~/x, ./y)"
    assert public_message(message) == (
        "reload refused, still serving <path>: no model package at <path> (<path>, <path>)"
    )
    assert public_message("expected [64, 3] or [batch, 64, 3]; 3/4 done") == (
        "expected [64, 3] or [batch, 64, 3]; 3/4 done"
    )


# -- drain, metrics -------------------------------------------------------------------------
def test_sigterm_with_idle_half_sent_and_in_flight_connections_exits_within_the_drain_limit(
    small_package,
):
    proc, port = http_process("--model", str(small_package), "--drain-timeout-s", "2")
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    idle.request("GET", "/v2/health/ready")
    assert idle.getresponse().read()  # answered; the connection stays open, idle
    half_headers = socket.create_connection(("127.0.0.1", port))
    half_headers.sendall(b"POST /v2/models/small/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
    half_body = socket.create_connection(("127.0.0.1", port))
    half_body.sendall(
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n".encode()
        + b"{" * 100
    )
    results = []

    def in_flight() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", INFER, infer_body([4, 64, 3]))
        response = conn.getresponse()
        response.read()
        results.append(response.status)

    client = threading.Thread(target=in_flight)
    client.start()
    proc.send_signal(signal.SIGTERM)
    client.join(timeout=60)
    try:
        assert proc.wait(timeout=2 + 30) == 0  # the drain limit, plus start-up slack of a busy box
    finally:
        for sock in (half_headers, half_body):
            sock.close()
    assert results == [200], results  # the in-flight request was answered, not dropped
    proc.log_reader.join(timeout=30)
    assert any("draining" in line for line in proc.log)


def test_metrics_count_exactly_what_was_sent_through_http(small_package):
    window = random_windows(1, 64, 3)[0]
    with http_server(small_package) as (_, port):
        good = infer_body([1, 64, 3], window.reshape(-1).tolist())
        for _ in range(7):
            assert request(port, "POST", INFER, good)[0] == 200
        for _ in range(3):
            assert request(port, "POST", INFER, infer_body([1, 63, 3]))[0] == 400
        for _ in range(2):
            assert request(port, "POST", "/v2/models/nope/infer", good)[0] == 404
        assert request(port, "POST", INFER, b"{", {"Content-Type": "text/plain"})[0] == 415
        text = request(port, "GET", "/metrics")[1].decode()
    counts = _request_counts(text)
    assert counts == {
        ("small", "success"): 7,
        ("small", "invalid_input"): 3,
        ("", "model_not_found"): 2,
        ("", "unsupported_media_type"): 1,
    }
    assert "ovcast_requests_in_flight 0.0" in text
    assert 'ovcast_request_duration_seconds_count{model="small"} 10.0' in text


def test_metrics_count_exactly_what_was_sent_through_json_lines(small_package):
    window = random_windows(1, 64, 3)[0]
    server = JsonLinesProcess("--model", str(small_package))
    for i in range(5):
        assert server.send(jsonl_line(i, window))["success"]
    assert server.send(jsonl_line("x", window, channels=[9]))["error"]["code"] == "invalid_input"
    assert server.send(b"{oops\n")["error"]["code"] == "invalid_json"
    text = server.send(b'{"request_id": "m", "command": "metrics"}\n')["metrics"]
    assert server.close() == 0
    assert _request_counts(text) == {
        ("small", "success"): 5,
        ("small", "invalid_input"): 1,
        ("", "invalid_json"): 1,
    }


def _request_counts(text: str) -> dict[tuple[str, str], int]:
    pattern = r'^ovcast_requests_total\{model="([^"]*)",outcome="([^"]*)"\} (\S+)$'
    return {(m, o): int(float(v)) for m, o, v in re.findall(pattern, text, re.M)}


def test_the_service_is_transport_free():
    """Ray Serve deployments (issue 19) import the core without a web framework."""
    import subprocess
    import sys

    code = (
        "import sys, ovcast.serve.core, ovcast.serve.jsonl_codec, ovcast.serve.kserve;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_body_that_stalls_gets_408_and_the_place_is_freed(small_package):
    with http_server(
        small_package, max_queue_size=1, http=HttpConfig(port=0, body_timeout_s=0.3)
    ) as (
        _,
        port,
    ):
        head = (
            f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n{{".encode()
        )
        reply = raw_exchange(port, head)  # the rest of the body never comes
        assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.3 s" in reply
        assert request(port, "POST", INFER, infer_body([1, 64, 3]))[0] == 200  # place freed


def test_a_bug_is_a_json_500_and_counted(served, monkeypatch):
    """attack13 finding 8: an exception the front end did not expect went out as uvicorn's
    plain-text 500 and was missing from ovcast_requests_total."""
    from ovcast.serve import kserve

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    before = _request_counts(request(served[1], "GET", "/metrics")[1].decode())
    monkeypatch.setattr(kserve, "decode_infer", broken)
    status, answer, _ = request(served[1], "POST", INFER, infer_body([1, 64, 3]))
    assert status == 500 and answer["code"] == "internal_error", answer
    after = _request_counts(request(served[1], "GET", "/metrics")[1].decode())
    assert after.get(("", "internal_error"), 0) == before.get(("", "internal_error"), 0) + 1


# -- bounds on connections: headers in time and size, how many (attack13 finding 6) --------
def _closed_by_server(sock: socket.socket, limit_s: float = 30.0) -> bytes:
    """What the server sends until it closes the connection (bounded by ``limit_s``)."""
    sock.settimeout(limit_s)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_headers_that_never_finish_are_cut_off(small_package):
    """Idle connections and slowloris heads were held forever (20/20 open after 40 s)."""
    with http_server(small_package, http=HttpConfig(port=0, header_timeout_s=0.5)) as (_, port):
        silent = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: b\r\n")
        for sock in (silent, slow):
            with sock:
                reply = _closed_by_server(sock)
                assert reply.startswith(b"HTTP/1.1 408") and b'"code":"header_timeout"' in reply
        with socket.create_connection(("127.0.0.1", port)) as keep_alive:
            keep_alive.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _closed_by_server(keep_alive).count(b"HTTP/1.1 200") == 1  # keep-alive: 5 s
        assert request(port, "GET", "/v2/health/live")[0] == 200


def test_headers_over_32_kib_are_refused_and_pipelined_bodies_are_not_headers(small_package):
    with http_server(small_package) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for _ in range(100):  # 800 KB of headers that never end: refused after 32 KiB
                sock.sendall(b"X-Pad: " + b"a" * 8000 + b"\r\n")
            reply = _closed_by_server(sock)
        assert reply.startswith(b"HTTP/1.1 431") and b'"code":"headers_too_large"' in reply
        body = infer_body([12, 64, 3], random_windows(12, 64, 3).reshape(-1).tolist())
        assert len(body) > 32 * 1024  # bodies bigger than the cap on heads, three in one write
        head = f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        last = head + "Connection: close\r\n"
        reply = raw_exchange(
            port, ((head + "\r\n").encode() + body) * 2 + (last + "\r\n").encode() + body
        )
        assert reply.count(b"HTTP/1.1 200") == 3


def test_a_framing_error_behind_a_request_in_progress_waits_for_its_answer(served, caplog):
    """A POST without a length, then its body: the body cannot be parsed as a request. The
    server answered that 400 at once, half-closing, and the 411 owed for the POST then
    failed ("Cannot call write() after write_eof()", a traceback in the log)."""
    head = f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    reply = raw_exchange(served[1], head + infer_body([1, 64, 3]))
    assert reply.startswith(b"HTTP/1.1 411"), reply[:200]
    assert "Exception in ASGI application" not in caplog.text
    assert request(served[1], "GET", "/v2/health/live")[0] == 200


def test_a_head_too_large_behind_a_request_in_progress_waits_for_its_answer(small_package):
    """Refused while the connection still owes an answer: the answer first, then the 431."""
    batching = {"max_batch_size": 4, "max_queue_delay_us": 300_000}  # the answer takes 0.3 s
    with http_server(small_package, **batching) as (_, port):
        body = infer_body([1, 64, 3])
        first = f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
        # Longer than a read (256 KiB): the read in which a request begins is not counted.
        endless = b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Pad: " + b"a" * 600_000
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(first.encode() + body + endless)
            reply = _closed_by_server(sock)
        assert reply.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 431" in reply, reply[:300]


def test_connections_beyond_the_cap_are_answered_503_and_closed(small_package):
    """270 idle sockets exhausted an open-file limit of 256: /v2/health/live failed. Now the
    cap stays within the limit, and what is beyond it is closed at once."""
    config = HttpConfig(port=0, max_connections=4, header_timeout_s=30)
    with http_server(small_package, http=config) as (front, port):
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        try:
            with socket.create_connection(("127.0.0.1", port)) as extra:
                reply = _closed_by_server(extra)
            assert reply.startswith(b"HTTP/1.1 503") and b"too_many_connections" in reply
        finally:
            for sock in idle:
                sock.close()
        for _ in range(200):  # the server sees the four go: then a client is served again
            if request(port, "GET", "/v2/health/live")[0] == 200:
                break
        text = request(port, "GET", "/metrics")[1].decode()
        assert 'ovcast_http_refused_total{reason="too_many_connections"}' in text


def test_the_connection_cap_stays_within_the_open_file_limit(monkeypatch):
    import resource

    from ovcast.errors import ServerStartError
    from ovcast.serve.asgi import connection_cap

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (256, 4096))
    assert connection_cap(None) == 256 - 64
    assert connection_cap(100) == 100
    with pytest.raises(ServerStartError, match="needs 564 open files; the limit is 256"):
        connection_cap(500)


def test_framing_errors_are_answered_in_json(served):
    """uvicorn's own answer was plain text "Invalid HTTP request received."."""
    for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 50,
                    b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\0b\r\n\r\n"):  # fmt: skip
        reply = raw_exchange(served[1], garbage)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
        assert orjson.loads(body)["code"] == "bad_http_request"
    upgrade = b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, close\r\n"
    reply = raw_exchange(served[1], upgrade + b"Upgrade: websocket\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200") and b'"name":"ovcast"' in reply  # plain HTTP


# -- who may ask ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "host, allowed",
    [("127.0.0.1:8000", True), ("localhost", True), ("LOCALHOST.:1", True), ("[::1]:80", True),
     ("api.example:443", True), ("evil.example", False), ("127.0.0.1.evil.example", False),
     ("localhost.evil.example:8000", False)],
)  # fmt: skip
def test_the_host_header_is_checked_on_loopback(small_package, host, allowed):
    """attack13 finding 19: a DNS-rebinding page (evil.example resolving to 127.0.0.1) could
    read the index, metadata and /metrics of a loopback server without a key."""
    config = HttpConfig(port=0, allowed_hosts=["api.example"])
    with http_server(small_package, http=config) as (_, port):
        for method, path in (("GET", "/metrics"), ("GET", "/v2/repository/index"),
                             ("GET", "/v2/models/small"), ("POST", INFER)):  # fmt: skip
            body = infer_body([1, 64, 3]) if method == "POST" else None
            status, answer, _ = request(port, method, path, body, {"Host": host})
            if allowed:
                assert status == 200, (path, answer)
            else:
                assert (status, answer["code"]) == (403, "host_not_allowed"), path
                assert "--allowed-host" in answer["error"]


def test_the_dashboard_checks_the_host_header_too():
    from ovcast.dashboard.server import DashboardServer
    from ovcast.dashboard.state import DashboardState

    server = DashboardServer(DashboardState(model=dict, feed=dict), "127.0.0.1", 0)
    server.start()
    try:
        assert request(server.port, "GET", "/api/status")[0] == 200
        status, answer, _ = request(server.port, "GET", "/api/status", headers={"Host": "e.x"})
        assert (status, answer["code"]) == (403, "host_not_allowed")
    finally:
        server.close()


def test_a_non_ascii_api_key_matches_its_utf8_bytes(small_package):
    """attack13 finding 16: headers were decoded latin-1 and compared as UTF-8."""
    with http_server(small_package, http=HttpConfig(port=0, api_key="p\u00e4ss")) as (_, port):
        for encoding, status in (("utf-8", 200), ("latin-1", 401)):
            head = b"GET /v2 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-API-Key: "
            reply = raw_exchange(port, head + "p\u00e4ss".encode(encoding) + b"\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 %d" % status), reply[:100]


@pytest.mark.parametrize("key", ["", " ", " s3cret", "s3\ncret"])
def test_an_empty_or_unsendable_api_key_is_refused(key):
    """attack13 finding 5: --api-key "" (or an unset variable) silently turned auth off."""
    from ovcast.errors import ServerStartError

    with pytest.raises(ServerStartError, match="no client could send it"):
        HttpConfig(api_key=key)


def test_the_cli_refuses_an_empty_api_key_from_either_source(small_package):
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "ovcast", "serve", "--mode", "http", "--port", "0",
               "--model", str(small_package)]  # fmt: skip
    for extra, env in ((["--api-key", ""], {}), ([], {"OVCAST_API_KEY": ""})):
        proc = subprocess.run(command + extra, env={**os.environ, **env}, capture_output=True,
                              timeout=60, text=True)  # fmt: skip
        assert proc.returncode == 1 and "the API key" in proc.stderr, proc.stderr[-1000:]
        assert "Traceback" not in proc.stderr


def test_compressed_bodies_are_refused_with_415(served):
    """attack13 finding 17: tritonclient's gzip compression got 400 "not valid UTF-8"."""
    import gzip

    headers = {"Content-Encoding": "gzip"}
    status, answer, _ = request(served[1], "POST", INFER, gzip.compress(infer_body([1, 64, 3])),
                                headers)  # fmt: skip
    assert (status, answer["code"]) == (415, "unsupported_media_type")
    assert "Content-Encoding 'gzip' is not supported" in answer["error"]
    assert request(served[1], "POST", INFER, infer_body([1, 64, 3]),
                   {"Content-Encoding": "identity"})[0] == 200  # fmt: skip


def test_an_unloaded_model_is_404_whatever_the_size_and_not_ready(small_package):
    """attack13 findings 13 and 14: with no model loaded the body cap fell to 64 KiB (413 for
    normal requests) and /v2/health/ready stayed 200."""
    body = infer_body([40, 64, 3], random_windows(40, 64, 3).reshape(-1).tolist())
    assert len(body) > 64 * 1024
    with http_server(f"small={small_package}") as (_, port):
        assert request(port, "POST", "/v2/repository/models/small/unload", b"")[0] == 200
        status, answer, _ = request(port, "POST", INFER, body)
        assert (status, answer["code"]) == (404, "model_not_found")
        status, answer, _ = request(port, "GET", "/v2/health/ready")
        assert (status, answer) == (503, {"ready": False})
        assert request(port, "POST", "/v2/repository/models/small/load", b"")[0] == 200
        assert request(port, "POST", INFER, body)[0] == 200
        assert request(port, "GET", "/v2/health/ready")[0] == 200


# -- signals: never an exit while a thread is inside OpenVINO (attack13 finding 3) ----------
def test_sigterm_during_start_up_exits_zero_after_the_model_being_compiled(tmp_path, small_package):
    proc = start_process("--mode", "http", "--port", "0", "--repository",
                         str(model_copies(tmp_path, small_package, 4)))  # fmt: skip
    log = LogLines(proc.stderr)
    log.wait_for("loading m1 version 1")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, log.text()[-2000:]
    text = log.text()
    assert "stopped during start-up" in text and "loading m4" not in text
    assert "ready model=" not in text and "terminate called" not in text


def test_sigterm_while_a_sighup_reload_compiles_exits_zero(tmp_path, small_package):
    proc, _ = http_process("--repository", str(model_copies(tmp_path, small_package, 4)))
    log = proc.log_lines
    proc.send_signal(signal.SIGHUP)
    log.wait_for("reloading every model")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    assert "terminate called" not in log.text()
