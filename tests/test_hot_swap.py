"""Hot swap through both front ends: no request dropped or failed; bad packages refused."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from conftest import random_windows
from serving import http_process, http_server, infer_body, jsonl_line, request

from ovcast import Engine

WINDOW = random_windows(1, 64, 3, seed=3)[0]


def command(request_id, name, **fields) -> bytes:
    return json.dumps({"request_id": request_id, "command": name, **fields}).encode() + b"\n"


def test_jsonl_reload_command_switches_in_order(
    small_package, other_package, wide_package, tmp_path
):
    old, new = Engine(small_package).predict(WINDOW), Engine(other_package).predict(WINDOW)
    assert not np.allclose(old, new)
    requests = [
        jsonl_line(1, WINDOW),
        command("r1", "reload", model_dir=str(tmp_path / "missing")),
        jsonl_line(2, WINDOW),
        command("r2", "reload", model=str(wide_package)),  # the older form: a folder as "model"
        jsonl_line(3, WINDOW),
        command("r3", "reload", model_dir=str(other_package)),
        jsonl_line(4, WINDOW),
        command("r4", "explode"),
        command("r5", "metrics"),
        command("r6", "index"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovcast", "serve", "--model", str(small_package)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(b"".join(requests), timeout=120)
    answers = [json.loads(x) for x in out.splitlines()]
    assert len(answers) == len(requests) and proc.returncode == 0, err.decode()[-2000:]
    np.testing.assert_allclose(answers[0]["predictions"], old, atol=1e-5)
    assert (
        answers[1]["error"]["code"] == "reload_failed"
        and "missing" in answers[1]["error"]["message"]
    )
    np.testing.assert_allclose(answers[2]["predictions"], old, atol=1e-5)  # still the old model
    assert answers[3]["error"]["code"] == "reload_failed"
    assert "clients would break" in answers[3]["error"]["message"]
    np.testing.assert_allclose(answers[4]["predictions"], old, atol=1e-5)
    reloaded = answers[5]
    assert (
        reloaded["success"] and reloaded["event"] == "reloaded" and reloaded["request_id"] == "r3"
    )
    assert reloaded["model"] == "small" and reloaded["model_dir"] == str(other_package)
    np.testing.assert_allclose(answers[6]["predictions"], new, atol=1e-5)  # the new model
    assert answers[7]["error"]["code"] == "invalid_request"
    metrics = answers[8]["metrics"]
    assert 'ovcast_requests_total{model="small",outcome="success"} 4.0' in metrics
    assert 'ovcast_model_loads_total{model="small",outcome="reload_failed"} 2.0' in metrics
    assert answers[9]["models"] == [{"name": "small", "version": "1", "state": "READY"}]


def test_jsonl_sighup_reload_under_load_fails_nothing(tmp_path, small_package, other_package):
    served = tmp_path / "served"
    shutil.copytree(small_package, served)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovcast", "serve", "--model", str(served), "--ready-line"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert json.loads(proc.stdout.readline())["event"] == "ready"
    new = Engine(other_package).predict(WINDOW)
    answers = []
    for i in range(300):
        if i == 50:  # replace the package on disk, then ask for a reload
            shutil.rmtree(served)
            shutil.copytree(other_package, served)
            proc.send_signal(signal.SIGHUP)
        proc.stdin.write(jsonl_line(i, WINDOW))
        proc.stdin.flush()
        answers.append(json.loads(proc.stdout.readline()))
        if i > 50 and np.allclose(answers[-1]["predictions"], new, atol=1e-5):
            break
        time.sleep(0.01)
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    assert all(a["success"] for a in answers)  # nothing failed during the swap
    assert np.allclose(answers[-1]["predictions"], new, atol=1e-5)  # and the swap happened


def test_http_sighup_under_concurrent_load_fails_nothing(tmp_path, small_package, other_package):
    served = tmp_path / "served"
    shutil.copytree(small_package, served)
    proc, port = http_process("--model", f"small={served}", "--max-batch-size", "4")
    new = Engine(other_package).predict(WINDOW[None])
    body = infer_body([1, 64, 3], WINDOW.reshape(-1).tolist())
    statuses: list[int] = []
    swapped, stop = threading.Event(), threading.Event()

    def client() -> None:
        # Until told to stop, not for a number of requests: the reload always lands under load.
        with contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=30)) as conn:
            while not stop.is_set():
                conn.request("POST", "/v2/models/small/infer", body)
                response = conn.getresponse()
                answer = json.loads(response.read())
                statuses.append(response.status)
                if response.status == 200:
                    out = np.reshape(answer["outputs"][0]["data"], (1, 16, 3))
                    if np.allclose(out, new, atol=1e-5):
                        swapped.set()

    clients = [threading.Thread(target=client) for _ in range(4)]
    try:
        try:
            for c in clients:
                c.start()
            for _ in range(3000):  # the clients are sending before the swap starts
                if len(statuses) >= 8:
                    break
                time.sleep(0.01)
            shutil.rmtree(served)
            shutil.copytree(other_package, served)
            proc.send_signal(signal.SIGHUP)
            proc.log_lines.wait_for("reloaded small/1")
            before = len(statuses)
            assert swapped.wait(timeout=60)  # the new model answers, under load
            for _ in range(3000):  # and requests go on after it
                if len(statuses) >= before + 8:
                    break
                time.sleep(0.01)
            assert proc.poll() is None  # SIGHUP did not kill it
        finally:
            stop.set()
            for c in clients:
                c.join(timeout=60)
        assert statuses and all(s == 200 for s in statuses), statuses  # nothing failed
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_http_load_refuses_bad_packages_and_unexpected_errors_keep_the_old_model(
    tmp_path, small_package, wide_package
):
    served = tmp_path / "small"
    shutil.copytree(small_package, served)
    with http_server(repository=tmp_path) as (front, port):
        ok = request(port, "POST", "/v2/models/small/infer", infer_body([1, 64, 3]))
        assert ok[0] == 200
        shutil.rmtree(served)
        shutil.copytree(wide_package, served)  # a 4-channel model: clients would break
        status, answer, _ = request(port, "POST", "/v2/repository/models/small/load")
        assert status == 400 and answer["code"] == "reload_failed"
        assert "clients would break" in answer["error"] and str(tmp_path) not in answer["error"]

        shutil.rmtree(served)
        shutil.copytree(small_package, served)

        def broken(path):  # not an OvcastError: the answer still comes, as reload_failed
            raise MemoryError("out of memory while compiling")

        front.service.model("small").slot._load = broken
        status, answer, _ = request(port, "POST", "/v2/repository/models/small/load")
        assert status == 400 and answer["code"] == "reload_failed", answer
        assert "unexpected MemoryError" in answer["error"]
        assert request(port, "POST", "/v2/models/small/infer", infer_body([1, 64, 3]))[0] == 200


def test_in_flight_batched_requests_finish_on_the_model_they_started_with(
    small_package, other_package
):
    """A swap between submit and result: the batch runs on the engine each job was accepted with."""
    from ovcast.serve.config import ServiceConfig
    from ovcast.serve.core import ForecastService, InferRequest
    from ovcast.serve.repository import Repository, parse_model_option

    service = ForecastService(
        Repository([parse_model_option(str(small_package))]),
        ServiceConfig(max_batch_size=8, max_queue_delay_us=200_000),
    )
    service.start()
    try:
        before = service.submit(InferRequest({"past_values": WINDOW}))
        service.reload(model_dir=other_package)
        after = service.submit(InferRequest({"past_values": WINDOW}))
        old, new = service.result(before), service.result(after)
        np.testing.assert_allclose(
            old.outputs["prediction_outputs"], Engine(small_package).predict(WINDOW), atol=1e-5
        )
        np.testing.assert_allclose(
            new.outputs["prediction_outputs"], Engine(other_package).predict(WINDOW), atol=1e-5
        )
    finally:
        service.close()
