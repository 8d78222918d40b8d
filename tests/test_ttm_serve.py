"""TinyTimeMixer packages served: every input through the serving core, both front ends
(KServe v2 over HTTP with tritonclient, JSON lines as a process) and the C++ client; raw
requests scale the window and the exogenous futures, per-series packages by series_id."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tsfm_public", reason="granite-tsfm is not installed (make install)")
tritonclient_http = pytest.importorskip("tritonclient.http", reason="needs ovcast[test]")
from serving import JsonLinesProcess, http_server, jsonl_line  # noqa: E402
from test_ttm import _frame, ttm_checkpoint  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from ovcast import Engine  # noqa: E402
from ovcast.convert import convert  # noqa: E402
from ovcast.parity import parity_windows  # noqa: E402

HORIZON = 96


@pytest.fixture(scope="module")
def exogenous_package(tmp_path_factory) -> Path:
    """load (target) from temp's known future (a control column) and price, hourly data:
    inputs past_values, freq_token (default 7, from the preprocessor), future_exogenous."""
    from tsfm_public import TimeSeriesPreprocessor

    folder = tmp_path_factory.mktemp("ttm-serve")
    tsp = TimeSeriesPreprocessor(
        timestamp_column="date",
        target_columns=["load"],
        control_columns=["temp"],
        conditional_columns=["price"],
        context_length=512,
        prediction_length=HORIZON,
        scaling=True,
    )
    tsp.train(_frame(7, 1200))
    ckpt = ttm_checkpoint(
        folder / "ckpt",
        num_input_channels=3,
        resolution_prefix_tuning=True,
        frequency_token_vocab_size=10,
        prediction_channel_indices=[0],
        exogenous_channel_indices=[1],
        enable_forecast_channel_mixing=True,
    )
    tsp.save_pretrained(ckpt)
    return convert(ckpt, folder / "pkg", name="ttm").path


@pytest.fixture(scope="module")
def series_package(tmp_path_factory) -> Path:
    from tsfm_public import TimeSeriesPreprocessor

    folder = tmp_path_factory.mktemp("ttm-series")
    tsp = TimeSeriesPreprocessor(
        timestamp_column="date",
        id_columns=["site"],
        target_columns=["load", "temp"],
        context_length=512,
        prediction_length=HORIZON,
        scaling=True,
    )
    tsp.train(_frame(8, 900, ids=("north", "south")))
    ckpt = ttm_checkpoint(folder / "ckpt", num_input_channels=2, scaling=False)
    tsp.save_pretrained(ckpt)
    return convert(ckpt, folder / "pkg", name="sites").path


@pytest.fixture(scope="module")
def requests_and_answers(exogenous_package):
    """Windows (raw and model space), known futures and what Engine says for them."""
    engine = Engine(exogenous_package)
    rng = np.random.default_rng(3)
    raw = np.ascontiguousarray(_frame(9, 512)[["load", "temp", "price"]].to_numpy(), np.float32)
    known = (20 + rng.normal(0, 1, (HORIZON, 1))).astype(np.float32)  # temp, raw units
    scaled = parity_windows(512, 3, 2)
    future = rng.standard_normal((2, HORIZON, 1)).astype(np.float32)
    return {
        "raw": raw,
        "known": known,
        "raw_forecast": engine.forecast(raw, future_exogenous=known),
        "scaled": scaled,
        "future": future,
        "forecast": engine.predict(scaled, future_exogenous=future),  # default token 7
        "forecast_token_3": engine.predict(scaled, future_exogenous=future, freq_token=3),
    }


def test_http_metadata_lists_every_input_and_says_what_it_means(exogenous_package):
    with http_server(exogenous_package) as (_, port):
        client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{port}")
        meta = client.get_model_metadata("ttm")
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("past_values", "FP32", [-1, 512, 3]),
        ("freq_token", "INT64", [-1]),
        ("future_exogenous", "FP32", [-1, HORIZON, 1]),
    ]
    assert meta["outputs"][0]["shape"] == [-1, HORIZON, 1]
    parameters = meta["parameters"]
    assert "known future values" in parameters["input_descriptions"]["future_exogenous"]
    assert parameters["optional_inputs"] == ["freq_token"]
    assert parameters["forecast_channel_names"] == ["load"]
    assert parameters["frequency"]["default"] == 7 and parameters["raw_supported"]


def _tensor(name, array, datatype="FP32"):
    tensor = tritonclient_http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def test_http_infers_with_every_input_raw_and_missing(exogenous_package, requests_and_answers):
    a = requests_and_answers
    with http_server(exogenous_package) as (_, port):
        client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{port}")
        window, future = (
            _tensor("past_values", a["scaled"]),
            _tensor("future_exogenous", a["future"]),
        )
        got = client.infer("ttm", [window, future]).as_numpy("prediction_outputs")
        np.testing.assert_allclose(got, a["forecast"], atol=1e-5)
        token = _tensor("freq_token", np.array([3, 3], np.int64), "INT64")
        got = client.infer("ttm", [window, token, future]).as_numpy("prediction_outputs")
        np.testing.assert_allclose(got, a["forecast_token_3"], atol=1e-5)
        raw = client.infer(
            "ttm",
            [_tensor("past_values", a["raw"][None]), _tensor("future_exogenous", a["known"][None])],
            parameters={"raw": True},
        ).as_numpy("prediction_outputs")
        np.testing.assert_allclose(raw[0], a["raw_forecast"], rtol=1e-5, atol=1e-4)
        with pytest.raises(InferenceServerException, match="missing input 'future_exogenous'"):
            client.infer("ttm", [window])
        with pytest.raises(InferenceServerException, match="disagree on the batch size"):
            client.infer("ttm", [window, _tensor("future_exogenous", a["future"][:1])])
        bad_token = _tensor("freq_token", np.array([3, 12], np.int64), "INT64")
        with pytest.raises(InferenceServerException, match=r"\[0, 10\)"):
            client.infer("ttm", [window, bad_token, future])


def test_jsonl_takes_the_inputs_object(exogenous_package, requests_and_answers):
    a = requests_and_answers
    server = JsonLinesProcess("--model", str(exogenous_package))
    try:
        one = server.send(
            jsonl_line(
                "1",
                a["scaled"][0],
                inputs={"future_exogenous": a["future"][0].tolist(), "freq_token": 3},
            )
        )
        assert one["success"], one
        np.testing.assert_allclose(one["predictions"], a["forecast_token_3"][0], atol=1e-5)
        raw = server.send(
            jsonl_line("2", a["raw"], inputs={"future_exogenous": a["known"].tolist()}, raw=True)
        )
        np.testing.assert_allclose(raw["predictions"], a["raw_forecast"], rtol=1e-5, atol=1e-4)
        missing = server.send(jsonl_line("3", a["scaled"][0]))
        assert not missing["success"] and "future_exogenous" in missing["error"]["message"]
        nan = a["scaled"][0].copy()
        nan[5, 1] = np.nan
        bad = server.send(
            jsonl_line("4", nan, inputs={"future_exogenous": a["future"][0].tolist()})
        )
        assert not bad["success"] and "nulls" in bad["error"]["message"]  # JSON's NaN
        assert server.send(jsonl_line("5", a["scaled"][0], series_id="x"))["success"] is False
    finally:
        assert server.close() == 0


def test_per_series_scalers_through_both_front_ends(series_package):
    engine = Engine(series_package)
    raw = _frame(10, 512, ids=("north", "south"))
    windows = np.ascontiguousarray(
        [raw[raw.site == s][["load", "temp"]].to_numpy(np.float32) for s in ("north", "south")]
    )
    expected = engine.forecast(windows, series_id=["north", "south"])
    server = JsonLinesProcess("--model", str(series_package))
    try:
        got = server.send(jsonl_line("1", windows, raw=True, series_id=["north", "south"]))
        np.testing.assert_allclose(got["predictions"], expected, rtol=1e-5, atol=1e-4)
        one = server.send(jsonl_line("2", windows[1], raw=True, series_id="south"))
        np.testing.assert_allclose(one["predictions"], expected[1], rtol=1e-5, atol=1e-4)
        unknown = server.send(jsonl_line("3", windows[0], raw=True, series_id="east"))
        assert "no scaler for series ['east']" in unknown["error"]["message"]
        none = server.send(jsonl_line("4", windows[0], raw=True))
        assert "give the series id (site)" in none["error"]["message"]
    finally:
        assert server.close() == 0
    with http_server(series_package) as (_, port):
        client = tritonclient_http.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.get_model_metadata("sites")["parameters"]["series_id_columns"] == ["site"]
        got = client.infer(
            "sites",
            [_tensor("past_values", windows)],
            parameters={"raw": True, "series_id": ["north", "south"]},
        ).as_numpy("prediction_outputs")
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


CPP_PROGRAM = r"""
#include <cstdio>
#include "inference_engine.h"
// argv: python, package, window.csv (512 x 3), future.csv (96 x 1)
static std::vector<float> read_csv(const char* path) {
  std::vector<float> values;
  FILE* f = std::fopen(path, "r");
  float v;
  while (f && std::fscanf(f, "%f,", &v) == 1) values.push_back(v);
  if (f) std::fclose(f);
  return values;
}
int main(int argc, char** argv) {
  if (argc != 5) return 2;
  ovcast::Options options;
  options.command = {argv[1], "-m", "ovcast", "serve", "--mode", "jsonl", "--model", argv[2]};
  options.timeout = std::chrono::milliseconds(20000);
  options.startup_timeout = std::chrono::milliseconds(120000);
  ovcast::InferenceEngine engine(options);
  std::vector<float> flat = read_csv(argv[3]);
  ovcast::Window window(512, std::vector<float>(3));
  for (size_t i = 0; i < flat.size(); ++i) window[i / 3][i % 3] = flat[i];
  ovcast::Inputs inputs = {{"future_exogenous", {96, 1}, read_csv(argv[4])},
                           {"freq_token", {}, {3}}};
  ovcast::Result with = engine.predict(window, inputs);
  ovcast::Result without = engine.predict(window);  // future_exogenous is required
  if (!with.ok()) { std::printf("error %s\n", with.message.c_str()); return 1; }
  for (const auto& row : with.predictions) std::printf("%.9g\n", row[0]);
  std::printf("without %s %s\n", ovcast::to_string(without.error), without.server_code.c_str());
  return 0;
}
"""


def test_cpp_client_sends_the_further_inputs(tmp_path, exogenous_package, requests_and_answers):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed (apt-get install g++)")
    a = requests_and_answers
    source = tmp_path / "ttm_client.cpp"
    source.write_text(CPP_PROGRAM)
    include = Path(__file__).resolve().parents[1] / "clients" / "cpp"
    binary = tmp_path / "ttm_client"
    build = subprocess.run(
        [
            gxx,
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-O1",
            f"-I{include}",
            "-o",
            binary,
            source,
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    np.savetxt(tmp_path / "w.csv", a["scaled"][0].reshape(-1), delimiter=",", fmt="%.9g")
    np.savetxt(tmp_path / "f.csv", a["future"][0].reshape(-1), delimiter=",", fmt="%.9g")
    done = subprocess.run(
        [binary, sys.executable, exogenous_package, tmp_path / "w.csv", tmp_path / "f.csv"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    forecast = np.array([float(v) for v in lines[:HORIZON]])
    np.testing.assert_allclose(forecast, a["forecast_token_3"][0][:, 0], atol=1e-4)
    assert lines[HORIZON].startswith("without ") and "invalid_request" in lines[HORIZON]


def test_hot_swap_checks_every_input(exogenous_package, tmp_path):
    """A reload to a package with other inputs (here: the same model with its frequency
    token fixed) is refused, clients would break; a reload of the same TTM package passes
    its smoke forecast with its own inputs."""
    from ovcast.errors import ModelPackageError
    from ovcast.runtime.slot import EngineSlot

    fixed = convert(Path(exogenous_package).parent / "ckpt", tmp_path / "fixed", freq_token=7)
    slot = EngineSlot(exogenous_package, Engine)
    assert slot.reload().package.path == Path(exogenous_package)
    with pytest.raises(ModelPackageError, match="takes the inputs"):
        slot.reload(fixed.path)
    # Same inputs and weights, but the known future is another channel (price, not temp):
    # the preprocessor lists price as the control column (channels load, price, temp).
    ckpt = Path(exogenous_package).parent / "ckpt"
    shutil.copytree(ckpt, tmp_path / "swapped")
    file = tmp_path / "swapped" / "preprocessor_config.json"
    data = json.loads(file.read_text())
    data.update(control_columns=["price"], conditional_columns=["temp"])
    file.write_text(json.dumps(data))
    swapped = convert(tmp_path / "swapped", tmp_path / "swapped-pkg")
    inputs = [(t.name, t.shape) for t in Engine(exogenous_package).inputs]
    assert [(t.name, t.shape) for t in swapped.manifest.inputs] == inputs  # same inputs
    with pytest.raises(ModelPackageError, match=r"exogenous channels would be \['price'\]"):
        slot.reload(swapped.path)
    # Without its preprocessor: raw scaling and the default token would be lost.
    (tmp_path / "swapped" / "preprocessor_config.json").unlink()
    bare = convert(tmp_path / "swapped", tmp_path / "bare-pkg")
    with pytest.raises(ModelPackageError, match="lose its default") as refused:
        slot.reload(bare.path)
    assert "raw scaling would be None, not one scaler" in str(refused.value)
    assert slot.engine.package.path == Path(exogenous_package)  # the old model serves on
