"""The KServe v2 HTTP front end in-process on loopback, with tritonclient as the client.

A two-model OVMS repository (``small`` with versions 1 and 2, ``market``) serves index,
metadata, infer (JSON and binary), load and unload as Triton defines them.
"""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
from conftest import random_windows
from serving import http_server, infer_body, request

from ovcast import Engine, ModelPackage
from ovcast.convert.repository import write_repository

tritonclient_http = pytest.importorskip("tritonclient.http", reason="needs ovcast[test]")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def repository(tmp_path_factory, small_package, other_package, market_package):
    """small/1 (small_package), small/2 (other_package), market/1, serving both small versions."""
    root = tmp_path_factory.mktemp("repo")
    write_repository(ModelPackage.load(small_package), root, version=1)
    write_repository(ModelPackage.load(other_package), root, version=2)
    write_repository(ModelPackage.load(market_package), root)
    config = json.loads((root / "config.json").read_text())
    for entry in config["model_config_list"]:
        if entry["config"]["name"] == "small":
            entry["config"]["model_version_policy"] = {"specific": {"versions": [1, 2]}}
    (root / "config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module", params=[1, 8], ids=["direct", "batched"])
def server(request, repository):
    with http_server(
        repository=repository, max_batch_size=request.param, max_queue_delay_us=2000
    ) as (
        front,
        port,
    ):
        yield front, port


def client(server):
    return tritonclient_http.InferenceServerClient(f"127.0.0.1:{server[1]}")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infer_each_model_and_version(server, small_package, other_package, binary):
    windows = random_windows(3, 64, 3, seed=2)
    inputs = tritonclient_http.InferInput("past_values", list(windows.shape), "FP32")
    inputs.set_data_from_numpy(windows, binary_data=binary)
    outputs = [tritonclient_http.InferRequestedOutput("prediction_outputs", binary_data=binary)]
    c = client(server)
    latest = c.infer("small", [inputs], outputs=outputs, request_id="r-7")
    np.testing.assert_allclose(
        latest.as_numpy("prediction_outputs"), Engine(other_package).predict(windows), atol=1e-5
    )
    assert latest.get_response()["id"] == "r-7" and latest.get_response()["model_version"] == "2"
    first = c.infer("small", [inputs], model_version="1", outputs=outputs)
    np.testing.assert_allclose(
        first.as_numpy("prediction_outputs"), Engine(small_package).predict(windows), atol=1e-5
    )
    market = tritonclient_http.InferInput("past_values", [1, 64, 7], "FP32")
    market.set_data_from_numpy(random_windows(1, 64, 7), binary_data=binary)
    assert c.infer("market", [market]).as_numpy("prediction_outputs").shape == (1, 16, 7)


def test_metadata_health_and_index(server):
    c = client(server)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("small")
    assert c.is_model_ready("small", "1") and not c.is_model_ready("small", "3")
    meta = c.get_model_metadata("small")
    assert meta["versions"] == ["1", "2"]
    assert meta["inputs"] == [{"name": "past_values", "datatype": "FP32", "shape": [-1, 64, 3]}]
    assert meta["outputs"][0]["shape"] == [-1, 16, 3] and meta["parameters"]["raw_supported"]
    assert c.get_model_metadata("market", model_version="1")["name"] == "market"
    assert "model_repository" in c.get_server_metadata()["extensions"]
    assert request(server[1], "GET", "/v2/repository/index")[1] == c.get_model_repository_index()
    index = c.get_model_repository_index()
    assert [(e["name"], e.get("version"), e["state"]) for e in index] == [
        ("market", "1", "READY"),
        ("small", "1", "READY"),
        ("small", "2", "READY"),
    ]


def test_tritonclient_unload_and_load_by_name(repository, small_package):
    with http_server(repository=repository) as server:
        c = client(server)
        c.unload_model("market")
        assert not c.is_model_ready("market")
        assert {"name": "market", "state": "UNAVAILABLE", "reason": "unloaded"} in (
            c.get_model_repository_index()
        )
        market = tritonclient_http.InferInput("past_values", [1, 64, 7], "FP32")
        market.set_data_from_numpy(random_windows(1, 64, 7))
        with pytest.raises(InferenceServerException, match="unknown model 'market'"):
            c.infer("market", [market])
        c.load_model("market")
        assert c.is_model_ready("market") and c.infer("market", [market]) is not None
        with pytest.raises(InferenceServerException, match="no model 'nope' in the repository"):
            c.load_model("nope")
        with pytest.raises(InferenceServerException, match="not supported"):
            c.load_model("market", config='{"backend": "onnx"}')  # no content from the network
        c.load_model("small")  # already served: re-read and hot-swapped, still serving
        assert c.is_model_ready("small", "2")


def test_concurrent_clients_every_answer_present_and_correct(server, other_package):
    windows = random_windows(16, 64, 3, seed=9)
    expected = Engine(other_package).predict(windows)
    failures: list[str] = []

    def worker(k: int) -> None:
        c = client(server)
        for i in range(20):
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
    status, body, _ = request(server[1], "GET", "/metrics")
    text = body.decode()
    assert status == 200 and 'ovcast_requests_total{model="small",outcome="success"}' in text
    assert "ovcast_batch_size_bucket" in text and "process_resident_memory_bytes" in text


def test_raw_and_channels_over_http_match_the_engine(small_package):
    window = np.abs(random_windows(1, 64, 3, seed=4)) + 1  # raw volumes are positive
    engine = Engine(small_package)
    with http_server(small_package) as (_, port):
        body = infer_body(
            [1, 64, 3], window.reshape(-1).tolist(), parameters={"raw": True, "channels": [0, 2]}
        )
        status, answer, _ = request(port, "POST", "/v2/models/small/infer", body)
        assert status == 200, answer
        out = answer["outputs"][0]
        assert out["shape"] == [1, 16, 2]
        np.testing.assert_allclose(
            np.reshape(out["data"], (1, 16, 2)), engine.forecast(window)[..., [0, 2]], rtol=1e-5
        )


def test_repository_without_config_serves_every_subfolder(tmp_path, small_package, market_package):
    for name, package in (("a", small_package), ("b", market_package)):
        shutil.copytree(package, tmp_path / name / "3")
    with http_server(repository=tmp_path) as server:
        c = client(server)
        assert c.get_model_metadata("a")["versions"] == ["3"]
        assert c.get_model_metadata("b")["inputs"][0]["shape"] == [-1, 64, 7]


def test_tritonclient_compression_and_statistics_get_clear_answers(server):
    """attack13 finding 17: gzip request compression got 400 "not valid UTF-8", and
    get_inference_statistics "unknown model 'stats'"."""
    c = client(server)
    inputs = tritonclient_http.InferInput("past_values", [1, 64, 3], "FP32")
    inputs.set_data_from_numpy(random_windows(1, 64, 3))
    with pytest.raises(InferenceServerException, match="Content-Encoding 'gzip' is not supported"):
        c.infer("small", [inputs], request_compression_algorithm="gzip")
    assert c.infer("small", [inputs], response_compression_algorithm="gzip") is not None
    for call in (c.get_inference_statistics, lambda: c.get_inference_statistics("small")):
        with pytest.raises(InferenceServerException, match="statistics extension is not served"):
            call()
