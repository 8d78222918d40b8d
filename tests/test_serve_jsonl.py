"""The JSON-lines server as a real subprocess: pipelined, malformed, long, signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
from conftest import random_windows
from serving import JsonLinesProcess, LogLines, jsonl_line, model_copies

from ovcast import ModelPackage
from ovcast.convert.repository import write_repository


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


# -- signals: handled from the start, never an exit while a thread is inside OpenVINO ----------
def _jsonl_process(*args: str) -> tuple[subprocess.Popen, LogLines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovcast", "serve", "--mode", "jsonl", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return proc, LogLines(proc.stderr)


def test_sighup_then_eof_waits_for_the_reload_and_exits_zero(tmp_path, small_package):
    """attack13 finding 3: EOF while a SIGHUP reload compiled aborted the process, 3 runs in 3
    ("terminate called without an active exception", exit -6)."""
    root = model_copies(tmp_path, small_package, 4)
    proc, log = _jsonl_process("--repository", str(root), "--ready-line")
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    proc.send_signal(signal.SIGHUP)
    log.wait_for("reloading every model")  # the reload thread is compiling now
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0, log.text()[-2000:]
    assert "terminate called" not in log.text()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_signals_during_start_up(tmp_path, small_package, sig):
    """attack13 finding 4: the handlers were installed after the models loaded, so SIGHUP
    during start-up killed the server (exit -1) and SIGTERM exited -15. Now SIGHUP reloads
    once started, and SIGTERM exits 0 after the model being compiled."""
    root = model_copies(tmp_path, small_package, 4)
    proc, log = _jsonl_process("--repository", str(root), "--ready-line")
    log.wait_for("loading m1 version 1")
    proc.send_signal(sig)
    if sig == signal.SIGHUP:
        assert json.loads(proc.stdout.readline())["event"] == "ready"
        log.wait_for("reloaded m1/1, m2/1, m3/1, m4/1")  # the reload after start-up
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0
    else:
        out, _ = proc.communicate(timeout=120)  # stdin stays open: the signal alone ends it
        assert proc.returncode == 0 and out == b""  # never ready, nothing on stdout
        assert "stopped during start-up" in log.text() and "loading m4" not in log.text()


# -- the repository while serving -----------------------------------------------------------
def test_the_line_cap_follows_the_models_loaded(tmp_path, small_package, market_package):
    """attack13 finding 9: the cap was fixed at start, so a valid request of a bigger model
    loaded later was refused as line_too_long (quoting the new cap)."""
    shutil.copytree(small_package, tmp_path / "small" / "1")
    server = JsonLinesProcess("--repository", str(tmp_path))
    try:
        windows = np.random.default_rng(0).standard_normal((64, 64, 7))  # float64: ~20 B each
        line = jsonl_line("big", windows, model="market")
        assert server.send(line)["error"]["code"] == "line_too_long"  # over small's cap
        shutil.copytree(market_package, tmp_path / "market" / "1")
        assert server.send(b'{"request_id": "l", "command": "load", "model": "market"}\n')[
            "success"
        ]
        answer = server.send(line)
        assert answer["success"], answer
        assert np.asarray(answer["predictions"]).shape == (64, 16, 7)
    finally:
        assert server.close() == 0


def test_a_broken_repository_is_answered_with_the_request_id(tmp_path, small_package):
    """attack13 finding 10: the index of a corrupted config.json answered internal_error with
    request_id null."""
    write_repository(ModelPackage.load(small_package), tmp_path)
    server = JsonLinesProcess("--repository", str(tmp_path))
    try:
        (tmp_path / "config.json").write_text("{ not json")
        answer = server.send(b'{"request_id": "i2", "command": "index"}\n')
        assert answer["request_id"] == "i2" and answer["error"]["code"] == "repository_error"
        assert "config.json" in answer["error"]["message"]
        assert server.send(jsonl_line(1, random_windows(1, 64, 3)[0]))["success"]
    finally:
        assert server.close() == 0


def test_after_the_last_unload_requests_get_model_not_found(small_package):
    """attack13 finding 14: "this server serves 0 models (); name the one to use"."""
    server = JsonLinesProcess("--model", f"small={small_package}")
    try:
        server.send(b'{"request_id": "u", "command": "unload", "model": "small"}\n')
        answer = server.send(jsonl_line(2, random_windows(1, 64, 3)[0]))
        assert answer["error"]["code"] == "model_not_found"
        assert "no model is loaded" in answer["error"]["message"]
    finally:
        assert server.close() == 0
