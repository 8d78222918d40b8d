"""The transport-free core and the model repository, in-process."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import random_windows
from serving import JsonLinesProcess, jsonl_line

from ovcast import Engine, ModelPackage
from ovcast.convert.repository import write_repository
from ovcast.errors import (
    ModelNotFoundError,
    ModelPackageError,
    ServerStartError,
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
    with pytest.raises(ModelNotFoundError, match="no version folders"):
        served_versions(ModelSource("e", tmp_path / "empty"))


@pytest.mark.parametrize(
    "policy, expected",
    [
        ({"newest": {}}, "expected one of"),
        (["latest"], "expected one of"),
        ({"latest": None, "all": {}}, "expected one of"),
        ({"latest": {"num_versions": "x"}}, "num_versions 'x'; expected an integer >= 1"),
        ({"latest": {"num_versions": 0}}, "num_versions 0; expected an integer >= 1"),
        ({"latest": {"num_versions": -3}}, "num_versions -3; expected an integer >= 1"),
        ({"latest": {"num_versions": True}}, "num_versions True"),
        ({"specific": {"versions": ["a"]}}, "specific.versions ['a']; expected a non-empty list"),
        ({"specific": {"versions": []}}, "specific.versions []"),
        ({"specific": [1]}, "'specific' takes an object"),
    ],
)
def test_a_bad_version_policy_is_one_clear_error(tmp_path, small_package, policy, expected):
    """Operator mistakes in config.json: a ModelPackageError naming what was expected (the
    CLI prints it as one line), never a ValueError or AttributeError traceback."""
    shutil.copytree(small_package, tmp_path / "m" / "1")
    with pytest.raises(ModelPackageError, match=re.escape(expected)):
        served_versions(ModelSource("m", tmp_path / "m", policy))


def test_only_plain_numbers_are_version_folders(tmp_path, small_package):
    for name in ("1", "\u00b2", "\u0661", "01", "2"):  # '²' and Arabic-Indic one pass isdigit()
        (tmp_path / "m" / name).mkdir(parents=True)
    shutil.copytree(small_package, tmp_path / "m" / "3")
    assert list(served_versions(ModelSource("m", tmp_path / "m", {"all": {}}))) == ["1", "2", "3"]


def test_repository_errors_at_start_up_are_one_line(tmp_path, small_package):
    shutil.copytree(small_package, tmp_path / "repo" / "small" / "1")
    shutil.copytree(small_package, tmp_path / "repo" / "small" / "\u00b2")
    policy = {"latest": {"num_versions": "x"}}
    config = {"model_config_list": [{"config": {"name": "small", "base_path": "small",
                                                "model_version_policy": policy}}]}  # fmt: skip
    (tmp_path / "repo" / "config.json").write_text(json.dumps(config))
    proc = subprocess.run(
        [sys.executable, "-m", "ovcast", "serve", "--repository", str(tmp_path / "repo")],
        input=b"", capture_output=True, timeout=120,
    )  # fmt: skip
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr.decode()[-2000:]
    assert "num_versions 'x'; expected an integer >= 1" in lines[0]


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
            max_batch_size=4, max_queue_delay_us=0, max_queue_size=1, request_timeout_s=1e-6
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


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"max_batch_size": 4, "request_timeout_s": 0}, "every batched request would time out"),
        ({"max_batch_size": 4, "max_queue_delay_us": 100_000_000, "request_timeout_s": 2},
         "every batched request would time out"),
        ({"channels": [0, 0]}, "channels must be distinct"),
        ({"max_request_bytes": 0}, "max_request_bytes must be >= 1"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_are_refused_at_start_up(settings, expected):
    with pytest.raises(ServerStartError, match=expected):
        ServiceConfig(**settings)
    ServiceConfig(max_batch_size=1, request_timeout_s=0)  # no batching: no batching timeout


def test_a_body_cap_below_one_window_is_refused_at_start_up(small_package):
    service = ForecastService(
        Repository([parse_model_option(str(small_package))]), ServiceConfig(max_request_bytes=300)
    )
    with pytest.raises(ServerStartError, match="cannot hold one window"):
        service.check()


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


# -- reloads that are refused, or asked for many times ---------------------------------------
def _versioned(root, package, *versions):
    for version in versions:
        shutil.copytree(package, root / "small" / str(version))
    return ForecastService(
        Repository([], root),
        ServiceConfig(max_batch_size=4, max_queue_delay_us=1000, request_timeout_s=5),
    )


def test_a_refused_reload_never_touches_the_serving_version(tmp_path, small_package):
    """attack13 finding 1: an incomplete new version folder (a copy in progress) was refused,
    but the batcher of version 1, which went on serving, was closed: every request then
    waited --request-timeout-s and got 503."""
    service = _versioned(tmp_path, small_package, 1)
    service.start()
    try:
        batcher = service.model().batcher
        (tmp_path / "small" / "2").mkdir()  # a copy in progress: no package yet
        with pytest.raises(ServingError) as refused:
            service.reload()
        assert refused.value.code == "reload_failed" and "small version 2" in str(refused.value)
        assert service.models() == {"small": ["1"]} and service.model().batcher is batcher
        result = service.infer(InferRequest({"past_values": WINDOW}))
        assert (result.model, result.version) == ("small", "1")  # answered, not timed out
        shutil.rmtree(tmp_path / "small" / "2")
        service.reload()
        assert service.infer(InferRequest({"past_values": WINDOW})).version == "1"
    finally:
        service.close()


def test_a_model_is_switched_all_or_nothing(tmp_path, small_package, other_package, wide_package):
    """Two served versions; one is replaced by a good package, the other by one that would
    break clients: neither switches."""
    service = _versioned(tmp_path, small_package, 1, 2)
    config = {"model_config_list": [{"config": {"name": "small", "base_path": "small",
                                                "model_version_policy": {"all": {}}}}]}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    service.start()
    try:
        before = {v: service.model("small", v).engine for v in ("1", "2")}
        for version, package in (("1", wide_package), ("2", other_package)):
            shutil.rmtree(tmp_path / "small" / version)
            shutil.copytree(package, tmp_path / "small" / version)
        with pytest.raises(ServingError, match="clients would break"):
            service.reload()
        assert {v: service.model("small", v).engine for v in ("1", "2")} == before
    finally:
        service.close()


def test_a_new_version_folder_passes_the_checks_of_a_reload(tmp_path, small_package):
    """attack13 finding 11: version 2 without a passing parity record was served after
    SIGHUP, while the same package swapped in place was refused."""
    service = _versioned(tmp_path, small_package, 1)
    service.start()
    try:
        shutil.copytree(small_package, tmp_path / "small" / "2")
        manifest = tmp_path / "small" / "2" / "ovcast.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "parity": {}}))
        with pytest.raises(ServingError, match="no passing fp32 parity record"):
            service.reload()
        assert service.models() == {"small": ["1"]}
        assert service.infer(InferRequest({"past_values": WINDOW})).version == "1"
    finally:
        service.close()


class _GatedLoader:
    """An engine loader that waits at a gate (a compile in progress), then loads for real."""

    def __init__(self) -> None:
        self.entered, self.gate, self.calls = threading.Event(), threading.Event(), 0
        self._called = threading.Condition()

    def __call__(self, path):
        with self._called:
            self.calls += 1
            self._called.notify_all()
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return Engine(path)

    def wait_calls(self, count: int) -> None:
        with self._called:
            assert self._called.wait_for(lambda: self.calls >= count, timeout=60)


def test_reload_requests_are_coalesced(small_package):
    """attack13 finding 7: each SIGHUP started a thread and a full recompile (30 SIGHUPs: 26
    threads, a 2-minute backlog). Now one reload runs and one more is pending, at most."""
    service = ForecastService(Repository([parse_model_option(str(small_package))]))
    service.start()
    loader = _GatedLoader()
    service.model().slot._load = loader
    threads_before = threading.active_count()
    for _ in range(30):
        service.request_reload()  # what the SIGHUP handler calls
        assert loader.entered.wait(60)  # the first reload is compiling; the rest wait
    assert threading.active_count() == threads_before  # no thread per request
    loader.gate.set()
    loader.wait_calls(2)  # the pending reload, for the 29 requests made during the first
    assert service.close()  # waits for it to finish
    assert loader.calls == 2
    assert 'ovcast_model_loads_total{model="small",outcome="success"} 2.0' in (
        service.metrics.render().decode()
    )


def test_a_reload_asked_for_during_start_up_runs_once_started(small_package):
    loader = _GatedLoader()
    service = ForecastService(Repository([parse_model_option(str(small_package))]))
    service._load_engine = loader
    starting = threading.Thread(target=service.start)
    starting.start()
    assert loader.entered.wait(60)  # start-up is compiling
    service.request_reload()
    loader.gate.set()
    starting.join(60)
    loader.wait_calls(2)  # the reload after start-up
    assert service.close() and loader.calls == 2


def test_close_waits_for_a_start_up_compile_and_start_gives_up(small_package, market_package):
    """attack13 findings 3 and 4: the process exited (SIGABRT) while a thread compiled. close()
    now waits for the compile in progress (bounded), and start() stops after it."""
    loader = _GatedLoader()
    service = ForecastService(
        Repository(
            [parse_model_option(str(small_package)), parse_model_option(str(market_package))]
        )
    )
    service._load_engine = loader
    outcome: list[bool] = []
    starting = threading.Thread(target=lambda: outcome.append(service.start()))
    starting.start()
    assert loader.entered.wait(60)
    assert service.close(timeout_s=0.05) is False  # a compile is in progress: not clean
    loader.gate.set()
    assert service.close(timeout_s=60) is True
    starting.join(60)
    assert outcome == [False] and loader.calls == 1  # the second model was never compiled
    assert not service.is_ready and service.models() == {}


# -- unload, load, readiness ----------------------------------------------------------------
def test_an_unloaded_model_named_by_its_manifest_loads_again(small_package):
    """attack13 findings 12, 13 and 14, in the core."""
    service = ForecastService(Repository([parse_model_option(str(small_package))]))
    service.start()
    try:
        cap = service.max_request_bytes
        service.unload("small")
        assert service.index() == [{"name": "small", "state": "UNAVAILABLE", "reason": "unloaded"}]
        assert not service.is_ready  # no model: not ready
        with pytest.raises(UnknownModelError, match="no model is loaded"):
            service.infer(InferRequest({"past_values": WINDOW}))
        assert service.max_request_bytes == cap  # its requests get 404, not 413
        assert service.load("small")[0]["version"] == "1"
        assert service.is_ready and service.infer(InferRequest({"past_values": WINDOW}))
    finally:
        service.close()


def test_the_body_cap_follows_the_models_loaded(tmp_path, small_package, market_package):
    shutil.copytree(small_package, tmp_path / "small" / "1")
    service = ForecastService(Repository([], tmp_path))
    service.start()
    try:
        before = service.max_request_bytes
        shutil.copytree(market_package, tmp_path / "market" / "1")
        service.load("market")
        assert service.max_request_bytes > before  # 7 channels instead of 3
    finally:
        service.close()


def test_repository_errors_while_serving_are_serving_errors(tmp_path, small_package):
    """attack13 finding 10: config.json corrupted while serving made the index a 500."""
    write_repository(ModelPackage.load(small_package), tmp_path)
    service = ForecastService(Repository([], tmp_path))
    service.start()
    try:
        (tmp_path / "config.json").write_text('{"model_config_list": [{"config": {"name"')
        with pytest.raises(ServingError) as caught:
            service.index()
        assert caught.value.code == "repository_error" and "config.json" in str(caught.value)
        assert service.infer(InferRequest({"past_values": WINDOW})).model == "small"
        service.unload("small")
        with pytest.raises(ServingError) as caught:
            service.load("small")
        assert caught.value.code == "reload_failed" and "config.json" in str(caught.value)
    finally:
        service.close()


def test_duplicate_channels_are_refused(small_package):
    """attack13 finding 2: channels [0] * 100000 turned a 0.9 MB request into an 822 MB
    answer. Channels are distinct indices, so at most the model's width of them."""
    service = ForecastService(Repository([parse_model_option(str(small_package))]))
    service.start()
    try:
        with pytest.raises(ServingError) as caught:
            service.infer(InferRequest({"past_values": WINDOW}, channels=[0] * 100_000))
        assert caught.value.code == "invalid_input" and caught.value.http_status == 400
        assert "channels repeat index 0 (100000 given)" in str(caught.value)
        assert len(str(caught.value)) < 300
        with pytest.raises(ServingError, match=r"channels \[7, 8, 9, 10, 11\] and 95 more"):
            service.infer(InferRequest({"past_values": WINDOW}, channels=list(range(7, 107))))
        with pytest.raises(ServingError, match=r"channels \[\] selects nothing"):
            service.infer(InferRequest({"past_values": WINDOW}, channels=[]))
        out = service.infer(InferRequest({"past_values": WINDOW}, channels=[2, 0]))
        assert out.outputs["prediction_outputs"].shape == (16, 2)
    finally:
        service.close()
