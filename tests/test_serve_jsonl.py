"""The JSON-lines server as a real subprocess: pipelined, malformed, long, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
from conftest import random_windows


def start(package, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ovcast",
            "serve",
            "--mode",
            "jsonl",
            "--model",
            str(package),
            *extra,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def request(i, window, **fields) -> bytes:
    return (
        orjson.dumps(
            {
                "request_id": str(i),
                "timestamp_ms": 1705678900000 + i,
                "past_values": window,
                **fields,
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        + b"\n"
    )


MALFORMED = [
    (b"\n", "empty_line", None),
    (b"   \n", "empty_line", None),
    (b"{not json\n", "invalid_json", None),
    (b"[1, 2, 3]\n", "invalid_request", None),
    (b'"just a string"\n', "invalid_request", None),
    (b'{"past_values": [[1]]}\n', "invalid_request", None),  # no request_id
    (b'{"request_id": "m1"}\n', "invalid_request", "m1"),  # no past_values
    (b'{"request_id": {"a": 1}, "past_values": []}\n', "invalid_request", None),
    (b'{"request_id": "m2", "timestamp_ms": "soon", "past_values": []}\n', "invalid_request", "m2"),
    (b'{"request_id": "m3", "past_values": "1,2,3"}\n', "invalid_request", "m3"),
    (b'{"request_id": "m4", "past_values": [[1, 2, 3]]}\n', "invalid_input", "m4"),
    (b'{"request_id": "m5", "past_values": [[NaN, 1, 2]]}\n', "invalid_json", None),
    (b'{"request_id": "m6", "past_values": [[1e999, 1, 2]]}\n', "invalid_json", None),  # overflow
    (b'{"request_id": "m7", "past_values": [["1", "2", "3"]]}\n', "invalid_input", "m7"),
    (b'{"request_id": "m8", "past_values": [[1, 2], [3]]}\n', "invalid_input", "m8"),
    (b'{"request_id": "m9", "past_values": [], "channels": [0, 99]}\n', "invalid_input", "m9"),
    (b'{"request_id": "m10", "past_values": [], "channels": "all"}\n', "invalid_request", "m10"),
    (b"\xff\xfe\xfd\n", "invalid_json", None),
    (
        b'{"request_id": "m11", "past_values": [[1, 2, 3]], "raw": "yes"}\n',
        "invalid_request",
        "m11",
    ),
]


def test_pipelined_requests_interleaved_with_malformed(small_package, small_engine):
    windows = random_windows(40, 64, 3, seed=5)
    lines, expected = [], []
    for i, window in enumerate(windows):
        lines.append(request(i, window))
        expected.append(("ok", str(i), small_engine.predict(window)))
        bad, code, rid = MALFORMED[i % len(MALFORMED)]
        lines.append(bad)
        expected.append(("error", rid, code))
    proc = start(small_package)
    out, err = proc.communicate(b"".join(lines), timeout=120)  # all written before any read
    assert proc.returncode == 0, err.decode()
    responses = [json.loads(line) for line in out.splitlines()]
    assert len(responses) == len(lines)  # exactly one response per request line, in order
    for response, (kind, rid, payload) in zip(responses, expected, strict=True):
        assert response["request_id"] == rid
        if kind == "ok":
            assert response["success"] is True
            np.testing.assert_allclose(response["predictions"], payload, atol=1e-5)
            assert response["timestamp_ms"] == 1705678900000 + int(rid)
            assert response["inference_time_ms"] > 0
        else:
            assert response["success"] is False and response["error"]["message"]
            if payload is not None:
                assert response["error"]["code"] == payload, response
    assert b"ready model=" in err  # logs on stderr only


def test_guide_example_shape_and_channel_selection(small_package, small_engine):
    window = random_windows(1, 64, 3)[0]
    proc = start(small_package, "--ready-line")
    out, _ = proc.communicate(
        request(1, window)
        + request(2, window, channels=[0])
        + request(3, window, raw=True, channels=[0, 2]),
        timeout=60,
    )
    ready, full, close, raw = (json.loads(line) for line in out.splitlines())
    assert ready["event"] == "ready" and ready["context_length"] == 64
    assert np.asarray(full["predictions"]).shape == (16, 3)  # [horizon][channels], all channels
    np.testing.assert_allclose(
        np.asarray(close["predictions"])[:, 0], np.asarray(full["predictions"])[:, 0], atol=1e-6
    )
    np.testing.assert_allclose(
        raw["predictions"], small_engine.forecast(window)[:, [0, 2]], rtol=1e-5
    )


def test_server_option_selects_channels(small_package):
    proc = start(small_package, "--channels", "1")
    out, _ = proc.communicate(request(1, random_windows(1, 64, 3)[0]), timeout=60)
    assert np.asarray(json.loads(out)["predictions"]).shape == (16, 1)


def test_too_long_line_is_answered_and_skipped(small_package):
    proc = start(small_package, "--max-request-bytes", "65536")
    window = random_windows(1, 64, 3)[0]
    long_line = b'{"request_id": "big", "past_values": [' + b"1.0," * 500000 + b"1.0]}\n"
    out, _ = proc.communicate(long_line + request(7, window), timeout=60)
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["error"]["code"] == "line_too_long" and first["request_id"] is None
    assert second["request_id"] == "7" and second["success"] is True


def test_sigterm_answers_what_was_received_and_exits_cleanly(small_package):
    proc = start(small_package, "--ready-line")
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    window = random_windows(1, 64, 3)[0]
    proc.stdin.write(b"".join(request(i, window) for i in range(5)))
    proc.stdin.flush()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)  # stdin stays open: the signal alone ends it
    assert proc.returncode == 0, err.decode()
    ids = [json.loads(line)["request_id"] for line in out.splitlines()]
    assert ids == [str(i) for i in range(5)]


def test_eof_without_requests_exits_zero(small_package):
    proc = start(small_package)
    out, err = proc.communicate(b"", timeout=60)
    assert proc.returncode == 0 and out == b""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_missing_model_fails_fast_with_a_message(tmp_path):
    proc = start(tmp_path / "nope")
    out, err = proc.communicate(b"", timeout=60)
    assert proc.returncode == 1 and out == b"" and b"no model package at" in err
