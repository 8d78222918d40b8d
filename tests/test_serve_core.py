"""The transport-free core and the model repository, in-process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import random_windows
from serving import JsonLinesProcess, jsonl_line

from ovcast import Engine, ModelPackage
from ovcast.convert.repository import write_repository
from ovcast.errors import (
    ModelNotFoundError,
    ModelPackageError,
    ServingError,
    UnavailableError,
    UnknownModelError,
)
from ovcast.serve.config import ServiceConfig
from ovcast.serve.core import ForecastService, InferRequest
from ovcast.serve.repository import ModelSource, Repository, parse_model_option, served_versions

WINDOW = random_windows(1, 64, 3, seed=31)[0]


def test_model_options_and_names(tmp_path):
    source = parse_model_option("btc=models/btc")
    assert (source.name, str(source.path)) == ("btc", "models/btc")
    assert parse_model_option("models/default").name is None
    odd = tmp_path / "a=b"
    odd.mkdir()
    assert parse_model_option(str(odd)).path == odd  # an existing folder with '=' in its name
    with pytest.raises(ModelPackageError, match="expected NAME=DIR"):
        parse_model_option("../x=models/y")


def test_version_policies(tmp_path, small_package):
    for version in (1, 2, 10):
        shutil.copytree(small_package, tmp_path / "m" / str(version))
    (tmp_path / "m" / "notes").mkdir()
    folder = tmp_path / "m"
    assert list(served_versions(ModelSource("m", folder))) == ["10"]
    latest2 = ModelSource("m", folder, {"latest": {"num_versions": 2}})
    assert list(served_versions(latest2)) == ["2", "10"]
    assert list(served_versions(ModelSource("m", folder, {"all": {}}))) == ["1", "2", "10"]
    specific = ModelSource("m", folder, {"specific": {"versions": [1, 2]}})
    assert list(served_versions(specific)) == ["1", "2"]
    with pytest.raises(ModelNotFoundError, match=r"version folders \[3\]"):
        served_versions(ModelSource("m", folder, {"specific": {"versions": [3]}}))
    with pytest.raises(ModelPackageError, match="expected latest, specific or all"):
        served_versions(ModelSource("m", folder, {"newest": {}}))
    with pytest.raises(ModelNotFoundError, match="no version folders"):
        served_versions(ModelSource("e", tmp_path / "empty"))


def test_names_from_the_network_never_become_paths(tmp_path, small_package):
    write_repository(ModelPackage.load(small_package), tmp_path / "repo")
    repository = Repository([], tmp_path / "repo")
    assert repository.names() == ["small"]
    for name in ("..", "../repo/small", "/etc", ".small", "small/1", "x" * 200):
        with pytest.raises(UnknownModelError):
            repository.source(name)


def test_the_core_lists_every_problem_once_and_raises_only_serving_errors(small_package):
    service = ForecastService(Repository([parse_model_option(str(small_package))]))
    with pytest.raises(UnavailableError, match="not ready"):
        service.infer(InferRequest({"past_values": WINDOW}))
    service.start()
    with pytest.raises(ServingError) as caught:
        service.infer(
            InferRequest(
                {"past_values": np.zeros((2, 63, 3), np.float32), "extra": np.zeros(3)},
                channels=[3],
                request_id="r",
            )
        )
    error = caught.value
    assert error.code == "invalid_request" and error.http_status == 400 and error.request_id == "r"
    assert "unknown input 'extra'" in str(error) and "has shape [2, 63, 3]" in str(error)
    assert "channels [3] out of range" in str(error)
    with pytest.raises(ServingError, match="missing input 'past_values'"):
        service.infer(InferRequest({}))
    result = service.infer(InferRequest({"past_values": WINDOW}, request_id=7))
    np.testing.assert_allclose(
        result.outputs["prediction_outputs"], Engine(small_package).predict(WINDOW), atol=1e-5
    )
    assert (result.model, result.version, result.request_id) == ("small", "1", 7)
    service.close()


def test_batching_timeout_and_overload_are_serving_errors(small_package):
    service = ForecastService(
        Repository([parse_model_option(str(small_package))]),
        ServiceConfig(
            max_batch_size=4, max_queue_delay_us=0, max_queue_size=1, request_timeout_s=0
        ),
    )
    service.start()
    with service.admit():
        with pytest.raises(UnavailableError, match="overloaded") as caught:
            with service.admit():
                pass
        assert caught.value.http_status == 503 and caught.value.code == "overloaded"
    pending = service.submit(InferRequest({"past_values": WINDOW}))
    try:
        service.result(pending)  # the batcher may have started it: then it answers
    except UnavailableError as exc:
        assert exc.code == "timeout"  # or it was still queued: skipped, never computed
    service.close()


def test_sighup_style_reload_picks_up_a_new_version_folder(tmp_path, small_package, other_package):
    root = tmp_path / "repo"
    write_repository(ModelPackage.load(small_package), root, version=1)
    service = ForecastService(Repository([], root))
    service.start()
    assert service.models() == {"small": ["1"]}
    write_repository(ModelPackage.load(other_package), root, version=2)
    service.reload()
    assert service.models() == {"small": ["2"]}  # latest policy: version 1 retired
    out = service.infer(InferRequest({"past_values": WINDOW})).outputs["prediction_outputs"]
    np.testing.assert_allclose(out, Engine(other_package).predict(WINDOW), atol=1e-5)
    service.close()


def test_jsonl_batches_pipelined_lines_and_answers_in_order(small_package, small_engine):
    windows = random_windows(24, 64, 3, seed=32)
    lines = b"".join(jsonl_line(i, w) for i, w in enumerate(windows))
    metrics = b'{"request_id": "m", "command": "metrics"}\n'
    proc = subprocess.run(
        [sys.executable, "-m", "ovcast", "serve", "--model", str(small_package),
         "--max-batch-size", "8", "--max-queue-delay-us", "20000"],
        input=lines + metrics, capture_output=True, timeout=120,
    )  # fmt: skip
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and [a["request_id"] for a in answers[:-1]] == list(range(24))
    np.testing.assert_allclose(
        [a["predictions"] for a in answers[:-1]], small_engine.predict(windows), atol=1e-5
    )
    text = answers[-1]["metrics"]
    batches = float(text.split('ovcast_batch_size_count{model="small"} ')[1].split()[0])
    assert batches < 24  # windows were read ahead and run together


def test_jsonl_load_unload_and_index_by_name(tmp_path, small_package, small_engine):
    root = tmp_path / "repo"
    write_repository(ModelPackage.load(small_package), root)
    server = JsonLinesProcess("--repository", str(root))
    try:
        assert (
            server.send(b'{"request_id": "u", "command": "unload", "model": "small"}\n')["event"]
            == "unloaded"
        )
        gone = server.send(jsonl_line(1, WINDOW, model="small"))
        assert gone["error"]["code"] == "model_not_found"
        index = server.send(b'{"request_id": "i", "command": "index"}\n')["models"]
        assert index == [{"name": "small", "state": "UNAVAILABLE", "reason": "unloaded"}]
        assert server.send(b'{"request_id": "l", "command": "load", "model": "small"}\n')["success"]
        back = server.send(jsonl_line(2, WINDOW, model="small"))
        np.testing.assert_allclose(back["predictions"], small_engine.predict(WINDOW), atol=1e-5)
        refused = server.send(b'{"request_id": "x", "command": "load", "model": "../etc"}\n')
        assert refused["error"]["code"] == "model_not_found"
    finally:
        assert server.close() == 0


def test_a_reload_that_fails_unexpectedly_is_a_reload_error(small_package):
    service = ForecastService(Repository([parse_model_option(str(small_package))]))
    service.start()

    def broken(path):
        raise RuntimeError("OpenVINO exploded")

    service.model().slot._load = broken
    with pytest.raises(ServingError) as caught:
        service.reload()
    assert caught.value.code == "reload_failed" and "unexpected RuntimeError" in str(caught.value)
    assert service.infer(InferRequest({"past_values": WINDOW})).model == "small"  # still serving
    service.close()


def test_cli_api_key_from_the_environment(small_package):
    import os

    from serving import http_process, request

    env = {**os.environ, "OVCAST_API_KEY": "from-env"}
    proc, port = http_process("--model", str(small_package), env=env)
    try:
        assert request(port, "GET", "/v2/models/small")[0] == 401
        assert request(port, "GET", "/v2/models/small", headers={"X-API-Key": "from-env"})[0] == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
