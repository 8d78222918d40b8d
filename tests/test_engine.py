"""The runtime Engine: shapes, bad input, concurrency, throughput path, scaling."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import random_windows

from ovcast import (
    Engine,
    InvalidInputError,
    ModelNotFoundError,
    ModelPackageError,
    PatchTSTOpenVINOInference,
)


def test_predict_shapes_and_list_input(small_engine):
    window = random_windows(1, 64, 3)[0]
    single = small_engine.predict(window)
    assert single.shape == (16, 3) and single.dtype == np.float32
    batched = small_engine.predict(np.stack([window, window * 2]))
    assert batched.shape == (2, 16, 3)
    np.testing.assert_allclose(batched[0], single, atol=1e-6)
    np.testing.assert_allclose(small_engine.predict(window.tolist()), single, atol=1e-6)
    np.testing.assert_allclose(small_engine.predict(window.astype(np.float64)), single, atol=1e-6)


BAD_INPUTS = {
    "empty": ([], "empty"),
    "too short": (np.zeros((63, 3)), r"shape \[63, 3\]; expected \[64, 3\]"),
    "too many channels": (np.zeros((2, 64, 4)), r"shape \[2, 64, 4\]"),
    "1-D": (np.zeros(64), r"expected \[64, 3\]"),
    "4-D": (np.zeros((1, 1, 64, 3)), "shape"),
    "NaN": (np.full((64, 3), np.nan), "NaN or inf"),
    "inf": (np.where(np.eye(64, 3) > 0, np.inf, 0.0), r"NaN or inf \(first at index \[0, 0\]\)"),
    "strings": ([["1.0"] * 3] * 64, "must be numbers"),
    "ragged": ([[1.0, 2.0, 3.0]] * 63 + [[1.0]], "ragged"),
    "objects": ([[None] * 3] * 64, "non-numbers"),
    "bools": (np.ones((64, 3), bool), "must be numbers"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_what_was_expected(small_engine, case):
    value, message = BAD_INPUTS[case]
    with pytest.raises(InvalidInputError, match=message):
        small_engine.predict(value)
    assert small_engine.predict(np.zeros((64, 3))).shape == (16, 3)  # still serving


def test_predict_is_thread_safe(small_package):
    engine = Engine(small_package, mode="throughput")
    windows = random_windows(8, 64, 3)
    expected = engine.predict(windows)
    results: dict[int, np.ndarray] = {}

    def worker(i: int) -> None:
        for _ in range(20):
            results[i] = engine.predict(windows[i])
            assert np.allclose(results[i], expected[i], atol=1e-5)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(np.stack([results[i] for i in range(8)]), expected, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_predict_many_keeps_order(small_engine, batch_size):
    windows = random_windows(10, 64, 3, seed=7)
    expected = small_engine.predict(windows)
    np.testing.assert_allclose(
        small_engine.predict_many(windows, batch_size=batch_size), expected, atol=1e-5
    )


def test_forecast_scales_and_inverse_scales(small_engine):
    scaler = small_engine.scaler
    raw = np.abs(random_windows(1, 64, 3)[0]) * 10 + 1
    expected = scaler.inverse_transform(small_engine.predict(scaler.transform(raw)))
    np.testing.assert_allclose(small_engine.forecast(raw), expected, rtol=1e-5)
    assert small_engine.forecast(np.stack([raw, raw])).shape == (2, 16, 3)


def test_forecast_without_scaler_is_a_clear_error(tmp_path, small_package):
    import json
    import shutil

    copy = tmp_path / "noscaler"
    shutil.copytree(small_package, copy)
    manifest = json.loads((copy / "ovcast.json").read_text())
    manifest["scaler"] = None
    (copy / "ovcast.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelPackageError, match="carries no scaler"):
        Engine(copy).forecast(np.zeros((64, 3)))


def test_cpu_config_overrides_win(small_package):
    engine = Engine(small_package, threads=1, warmup=False)
    assert engine.config["INFERENCE_NUM_THREADS"] == 1
    assert engine.config["INFERENCE_PRECISION_HINT"] == "f32"
    tput = Engine(small_package, mode="throughput", streams=2, warmup=False)
    assert tput.config["NUM_STREAMS"] == 2 and tput.num_requests >= 2
    with pytest.raises(ValueError, match="mode"):
        Engine(small_package, mode="fastest")


def test_tuned_config_in_manifest_is_the_default(tmp_path, small_package):
    import shutil

    from ovcast import ModelPackage

    copy = tmp_path / "tuned"
    shutil.copytree(small_package, copy)
    package = ModelPackage.load(copy)
    package.manifest.runtime_config = {"latency": {"INFERENCE_NUM_THREADS": 1}}
    package.save_manifest()
    assert Engine(copy, warmup=False).config["INFERENCE_NUM_THREADS"] == 1
    assert Engine(copy, threads=2, warmup=False).config["INFERENCE_NUM_THREADS"] == 2


def test_compiled_model_cache(tmp_path, small_package):
    cache = tmp_path / "cache"
    first = Engine(small_package, cache_dir=cache, warmup=False)
    assert any(cache.iterdir())
    second = Engine(small_package, cache_dir=cache, warmup=False)
    window = np.zeros((64, 3), np.float32)
    np.testing.assert_array_equal(first.predict(window), second.predict(window))


def test_guide_alias(small_package):
    assert PatchTSTOpenVINOInference is Engine
    engine = PatchTSTOpenVINOInference(str(small_package))
    assert engine.predict(np.zeros((64, 3))).shape == (16, 3)


def test_missing_package_says_where_and_how(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        Engine(tmp_path / "models" / "nope")
    message = str(info.value)
    assert str(tmp_path / "models" / "nope") in message and "ovcast convert" in message


def test_a_closed_engine_says_so_and_predict_many_leaves_a_clean_exit(small_package):
    """predict_many once used a Python callback on OpenVINO's AsyncInferQueue; the process
    then aborted at exit about one run in three ("terminate called without an active
    exception")."""
    import subprocess
    import sys

    from ovcast import Engine, ModelPackageError

    engine = Engine(small_package, warmup=False)
    engine.close()
    with pytest.raises(ModelPackageError, match="is closed"):
        engine.predict(np.zeros((64, 3), np.float32))
    code = (
        "import numpy as np, ovcast\n"
        f"engine = ovcast.Engine({str(small_package)!r}, warmup=False)\n"
        "engine.predict_many(np.zeros((4, 64, 3), np.float32))\n"
    )
    for _ in range(4):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
