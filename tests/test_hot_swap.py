"""Hot swap in both servers: no request dropped or failed; bad packages refused."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import orjson
from conftest import random_windows

from ovcast import Engine
from ovcast.serve.http import ForecastHTTPServer, HttpConfig


def line(i, window) -> bytes:
    return (
        orjson.dumps({"request_id": i, "past_values": window}, option=orjson.OPT_SERIALIZE_NUMPY)
        + b"\n"
    )


def test_jsonl_reload_command_switches_in_order(
    small_package, other_package, wide_package, tmp_path
):
    window = random_windows(1, 64, 3, seed=3)[0]
    old, new = Engine(small_package).predict(window), Engine(other_package).predict(window)
    assert not np.allclose(old, new)
    requests = [
        line(1, window),
        json.dumps(
            {"request_id": "r1", "command": "reload", "model": str(tmp_path / "missing")}
        ).encode()
        + b"\n",
        line(2, window),
        json.dumps({"request_id": "r2", "command": "reload", "model": str(wide_package)}).encode()
        + b"\n",
        line(3, window),
        json.dumps({"request_id": "r3", "command": "reload", "model": str(other_package)}).encode()
        + b"\n",
        line(4, window),
        json.dumps({"request_id": "r4", "command": "explode"}).encode() + b"\n",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovcast", "serve", "--model", str(small_package)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(b"".join(requests), timeout=120)
    answers = [json.loads(x) for x in out.splitlines()]
    assert len(answers) == len(requests) and proc.returncode == 0
    np.testing.assert_allclose(answers[0]["predictions"], old, atol=1e-5)
    assert (
        answers[1]["error"]["code"] == "reload_failed"
        and "missing" in answers[1]["error"]["message"]
    )
    np.testing.assert_allclose(answers[2]["predictions"], old, atol=1e-5)  # still the old model
    assert (
        answers[3]["error"]["code"] == "reload_failed"
        and "clients would break" in answers[3]["error"]["message"]
    )
    np.testing.assert_allclose(answers[4]["predictions"], old, atol=1e-5)
    assert answers[5] == {
        "request_id": "r3",
        "success": True,
        "event": "reloaded",
        "model": "small",
        "model_dir": str(other_package),
    }
    np.testing.assert_allclose(answers[6]["predictions"], new, atol=1e-5)  # the new model
    assert answers[7]["error"]["code"] == "invalid_request"


def test_jsonl_sighup_reload_under_load_fails_nothing(tmp_path, small_package, other_package):
    import shutil

    served = tmp_path / "served"
    shutil.copytree(small_package, served)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovcast", "serve", "--model", str(served), "--ready-line"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    window = random_windows(1, 64, 3, seed=3)[0]
    new = Engine(other_package).predict(window)
    answers = []
    for i in range(300):
        if i == 50:  # replace the package on disk, then ask for a reload
            shutil.rmtree(served)
            shutil.copytree(other_package, served)
            proc.send_signal(signal.SIGHUP)
        proc.stdin.write(line(i, window))
        proc.stdin.flush()
        answers.append(json.loads(proc.stdout.readline()))
        if i > 50 and np.allclose(answers[-1]["predictions"], new, atol=1e-5):
            break
        time.sleep(0.01)
    proc.stdin.close()
    proc.wait(timeout=30)
    assert all(a["success"] for a in answers)  # nothing failed during the swap
    assert np.allclose(answers[-1]["predictions"], new, atol=1e-5)  # and the swap happened


def test_http_reload_under_concurrent_load(small_package, other_package, wide_package):
    srv = ForecastHTTPServer(HttpConfig(str(small_package), port=0))
    thread = threading.Thread(target=srv.httpd.serve_forever, daemon=True)
    thread.start()
    srv.load()
    window = random_windows(1, 64, 3, seed=3)
    old, new = Engine(small_package).predict(window), Engine(other_package).predict(window)
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "past_values",
                    "shape": [1, 64, 3],
                    "datatype": "FP32",
                    "data": window.reshape(-1).tolist(),
                }
            ]
        }
    ).encode()
    statuses: list[int] = []
    results: list[np.ndarray] = []
    stop = threading.Event()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        for _ in range(200):
            if stop.is_set():
                break
            conn.request("POST", "/v2/models/small/infer", body)
            response = conn.getresponse()
            statuses.append(response.status)
            results.append(
                np.asarray(json.loads(response.read())["outputs"][0]["data"]).reshape(1, 16, 3)
            )

    def post(path, payload=b""):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.request("POST", path, payload)
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    clients = [threading.Thread(target=client) for _ in range(4)]
    for c in clients:
        c.start()
    time.sleep(0.2)
    bad = json.dumps({"parameters": {"model_dir": str(wide_package)}}).encode()
    assert post("/v2/repository/models/small/load", bad)[0] == 400
    assert post("/v2/repository/models/other/load")[0] == 404
    good = json.dumps({"parameters": {"model_dir": str(other_package)}}).encode()
    status, answer = post("/v2/repository/models/small/load", good)
    assert status == 200 and answer["reloaded"] is True
    time.sleep(0.2)
    stop.set()
    for c in clients:
        c.join(timeout=60)
    srv.shutdown()
    assert statuses and all(s == 200 for s in statuses)  # no request failed across the swap
    assert all(np.allclose(r, old, atol=1e-5) or np.allclose(r, new, atol=1e-5) for r in results)
    assert np.allclose(results[-1], new, atol=1e-5)
