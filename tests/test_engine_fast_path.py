"""The Engine's fast paths: the static batch-1 model, and bf16 where it was measured harmless.

Speed is measured by ovcast bench, never asserted here: these tests check that the right
model answers, that answers do not change, and that the precision follows the evidence.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import random_windows

from ovcast import ConfigError, Engine, ModelPackage
from ovcast.bench.precision import PrecisionData, check_bf16, record_bf16
from ovcast.runtime import precision
from ovcast.runtime.compiled import batch1_model
from ovcast.runtime.precision import FORECAST_TOLERANCE, METRIC_TOLERANCE, choose_precision
from ovcast.runtime.records import this_machine

BF16_CPU = ["fma", "avx2", "avx512f", "avx512_bf16"]
AVX2_CPU = ["fma", "avx2"]


@pytest.fixture
def package_copy(tmp_path, small_package):
    shutil.copytree(small_package, tmp_path / "pkg")
    return tmp_path / "pkg"


def _record(within: bool, mse_change: float = 2e-4) -> dict:
    return {
        "within_tolerance": within,
        "forecast_max_abs_change": 3e-3,
        "forecast_rms_change": 2e-3,
        "metric": {
            "windows": "64 synthetic validation windows",
            "mse_f32": 0.5,
            "mse_bf16": 0.5 * (1 + mse_change),
            "mse_change": mse_change,
            "mae_f32": 0.4,
            "mae_bf16": 0.4,
            "mae_change": 0.0,
        },
        "tolerance": {"metric_change": METRIC_TOLERANCE, "forecast_rms_change": FORECAST_TOLERANCE},
        "measured_on": this_machine(),
        "at": "2026-01-01T00:00:00Z",
    }


def test_single_windows_go_to_the_static_model_and_answer_the_same(small_package, monkeypatch):
    fast = Engine(small_package, warmup=False)
    plain = Engine(small_package, static_batch1=False, warmup=False)
    assert fast.static_batch1 and not plain.static_batch1
    windows = random_windows(5, 64, 3, seed=3)
    for window in windows:
        np.testing.assert_allclose(fast.predict(window), plain.predict(window), atol=1e-5)
    assert fast._models._dynamic is None  # single windows never compiled the dynamic model
    np.testing.assert_allclose(fast.predict(windows), plain.predict(windows), atol=1e-5)
    assert fast._models._dynamic is not None  # the first batch did
    np.testing.assert_allclose(fast.predict_many(windows), plain.predict(windows), atol=1e-5)
    assert fast.predict(windows[:1]).shape == (1, 16, 3)  # a batch of one stays a batch

    def refuse(inputs):  # the dynamic model must not see single windows
        raise AssertionError("a single window reached the dynamic-batch model")

    monkeypatch.setattr(fast._models.dynamic, "infer", refuse)
    fast.predict(windows[0])
    fast.predict(windows[:1])
    with pytest.raises(AssertionError, match="dynamic-batch"):
        fast.predict(windows[:2])


def test_tune_can_turn_the_static_model_off(package_copy):
    package = ModelPackage.load(package_copy)
    package.manifest.runtime_config["latency"] = {
        "INFERENCE_NUM_THREADS": 1,
        "static_batch1": False,
    }
    package.save_manifest()
    assert not Engine(package_copy, warmup=False).static_batch1
    assert Engine(package_copy, static_batch1=True, warmup=False).static_batch1


def test_batch1_model_fixes_only_a_dynamic_batch(small_package):
    import openvino as ov

    model = ov.Core().read_model(ModelPackage.load(small_package).xml_path)
    static = batch1_model(model)
    assert list(static.inputs[0].get_partial_shape().to_shape()) == [1, 64, 3]
    assert model.inputs[0].get_partial_shape()[0].is_dynamic  # the original is untouched
    assert batch1_model(static) is None


@pytest.mark.parametrize(
    ("flags", "record", "asked", "env", "hint"),
    [
        (AVX2_CPU, _record(True), None, None, "f32"),  # no bf16 units: nothing changes
        (BF16_CPU, None, None, None, "f32"),  # not measured
        (BF16_CPU, _record(False, 5e-3), None, None, "f32"),  # measured outside tolerance
        (BF16_CPU, _record(True), None, None, "bf16"),
        (BF16_CPU, _record(True), "f32", None, "f32"),  # one argument away
        (BF16_CPU, _record(True), None, "f32", "f32"),  # ovcast --precision f32 / the variable
        (BF16_CPU, _record(True), "auto", "f32", "bf16"),  # an argument wins over the variable
        (AVX2_CPU, None, "bf16", None, "bf16"),  # asked for: OpenVINO decides what it can do
    ],
)
def test_precision_follows_the_cpu_and_the_evidence(
    small_package, monkeypatch, flags, record, asked, env, hint
):
    manifest = ModelPackage.load(small_package).manifest
    if record is not None:
        manifest.runtime_config["precision"] = {"bf16": record}
    if env:
        monkeypatch.setenv(precision.PRECISION_ENV, env)
    else:
        monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    choice = choose_precision(manifest, asked, flags)
    assert choice.hint == hint
    assert choice.reason
    if record is not None and asked is None and env is None and "avx512_bf16" in flags:
        assert "MSE" in choice.evidence and "tolerance" in choice.evidence


def test_a_bad_precision_names_the_choices(small_package, monkeypatch):
    manifest = ModelPackage.load(small_package).manifest
    with pytest.raises(ConfigError, match="auto.*f32.*bf16"):
        choose_precision(manifest, "fp8")
    monkeypatch.setenv(precision.PRECISION_ENV, "half")
    with pytest.raises(ConfigError, match="OVCAST_PRECISION"):
        Engine(small_package, warmup=False)


def test_engine_uses_bf16_by_default_only_with_evidence_and_units(package_copy, monkeypatch):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    package = ModelPackage.load(package_copy)
    record_bf16(package, _record(True))
    package.save_manifest()
    monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "x", "flags": BF16_CPU})
    engine = Engine(package_copy, warmup=False)
    assert engine.precision.hint == "bf16"
    forced = Engine(package_copy, precision_hint="f32", warmup=False)
    assert forced.precision.hint == "f32" and forced.config["INFERENCE_PRECISION_HINT"] == "f32"
    monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "x", "flags": AVX2_CPU})
    engine = Engine(package_copy, warmup=False)
    assert engine.precision.hint == "f32" and engine.config["INFERENCE_PRECISION_HINT"] == "f32"


def test_check_bf16_measures_forecasts_and_metrics(package_copy, tmp_path):
    package = ModelPackage.load(package_copy)
    record = check_bf16(package)
    assert record["metric"]["windows"] == "64 synthetic validation windows"
    assert record["metric"]["mse_f32"] > 0 and record["metric"]["mae_f32"] > 0
    within = (
        abs(record["metric"]["mse_change"]) <= METRIC_TOLERANCE
        and abs(record["metric"]["mae_change"]) <= METRIC_TOLERANCE
        and record["forecast_rms_change"] <= FORECAST_TOLERANCE
    )
    assert record["within_tolerance"] is within
    if record["compiled_as"] == "bf16":  # a CPU with bf16 units: bf16 really ran
        assert 0 < record["forecast_rms_change"] < 0.05
    else:
        assert record["forecast_rms_change"] == 0
    json.dumps(record)  # it goes into the manifest

    rows = 400  # a CSV of the model's 3 channels: the metric on its validation split
    t = np.arange(rows)
    values = np.stack([np.sin(t / 7), np.cos(t / 11), np.sin(t / 5) * 0.5], axis=1)
    csv = tmp_path / "series.csv"
    csv.write_text(
        "date,a,b,c\n"
        + "".join(
            f"2024-01-{1 + i // 24:02d} {i % 24:02d}:00:00,{a:.5f},{b:.5f},{c:.5f}\n"
            for i, (a, b, c) in enumerate(values)
        )
    )
    on_data = check_bf16(package, PrecisionData(data=str(csv), splits="0.6,0.2"))
    assert on_data["metric"]["windows"].startswith("series.csv, val split, ")
    assert on_data["metric"]["mse_f32"] > 0


def test_tune_records_bf16_and_info_shows_it(package_copy, monkeypatch, capsys):
    """Where the CPU has bf16 units (faked here when this one has none), tune measures bf16
    and records it; info shows the evidence and what an engine computes in."""
    from ovcast.bench import tune as tune_mod
    from ovcast.cli import main

    monkeypatch.setattr(tune_mod, "native_bf16", lambda: True)
    code = main(["-q", "tune", str(package_copy), "--duration", "0.2", "--no-env"])
    assert code == 0
    out = capsys.readouterr().out
    assert "bf16 accuracy:" in out and "static batch-1 model:" in out
    manifest = ModelPackage.load(package_copy).manifest
    assert isinstance(manifest.runtime_config["latency"]["static_batch1"], bool)
    assert "within_tolerance" in manifest.runtime_config["precision"]["bf16"]
    assert main(["info", str(package_copy)]) == 0
    info = capsys.readouterr().out
    assert "bf16 check" in info and "synthetic validation windows" in info
    assert "computes in (here)" in info and "export rewrites" in info
    assert main(["--precision", "f32", "info", str(package_copy)]) == 0
    assert "f32 (as asked)" in capsys.readouterr().out
    assert precision.PRECISION_ENV not in os.environ  # restored after the command


def test_a_chosen_bf16_that_does_not_compile_falls_back_to_f32(package_copy, monkeypatch):
    """The guide's ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN below bf16 (no bf16 Softmax): an
    engine that chose bf16 must still start, in f32; one that was asked for bf16 must fail."""
    from ovcast import ModelPackageError
    from ovcast.runtime import engine as engine_mod

    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    package = ModelPackage.load(package_copy)
    record_bf16(package, _record(True))
    package.save_manifest()
    monkeypatch.setattr(precision, "cpu_info", lambda: {"model": "x", "flags": BF16_CPU})
    real = engine_mod.CompiledModels

    def no_bf16_softmax(core, xml, properties, **options):
        if properties["INFERENCE_PRECISION_HINT"] == "bf16":
            raise ModelPackageError("Supported primitive descriptors list is empty: Softmax")
        return real(core, xml, properties, **options)

    monkeypatch.setattr(engine_mod, "CompiledModels", no_bf16_softmax)
    engine = Engine(package_copy, warmup=False)
    assert engine.precision.hint == "f32" and engine.config["INFERENCE_PRECISION_HINT"] == "f32"
    assert "bf16 did not compile here" in engine.precision.reason
    assert engine.predict(random_windows(1, 64, 3)[0]).shape == (16, 3)
    with pytest.raises(ModelPackageError, match="Softmax"):
        Engine(package_copy, precision_hint="bf16", warmup=False)


@pytest.mark.skipif(not precision.native_bf16(), reason="needs a CPU with bf16 units")
def test_the_guides_isa_cap_with_a_bf16_package_still_forecasts(package_copy):
    import subprocess
    import sys

    package = ModelPackage.load(package_copy)
    record_bf16(package, _record(True))
    package.save_manifest()
    code = (
        "import sys, numpy as np; from ovcast import Engine; e = Engine(sys.argv[1]); "
        "print(e.precision.hint, e.predict(np.zeros((64, 3), np.float32)).shape)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(package_copy)],
        capture_output=True,
        text=True,
        env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", precision.PRECISION_ENV: "auto"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] in ("f32", "bf16")  # bf16 where the cap allows it


def test_bf16_on_data_reads_the_packages_channels_by_name(package_copy, tmp_path):
    """tune --data reads the CSV as evaluate does: by the package's channel names, and a
    --columns order that swaps them is refused (it would score the wrong channels)."""
    from ovcast import ConfigError

    rows = 400
    t = np.arange(rows)
    csv = tmp_path / "named.csv"
    csv.write_text(
        "date,rsi,close,volume,extra\n"
        + "".join(
            f"2024-01-{1 + i // 24:02d} {i % 24:02d}:00:00,{50 + 10 * np.sin(i / 5):.4f},"
            f"{100 + np.sin(i / 7):.4f},{2 + np.cos(i / 11):.4f},1\n"
            for i in t
        )
    )
    package = ModelPackage.load(package_copy)
    by_name = check_bf16(package, PrecisionData(data=str(csv), splits="0.6,0.2"))
    assert by_name["metric"]["mse_f32"] > 0  # the columns rsi,close,volume,extra were picked
    with pytest.raises(ConfigError, match=r"\['close', 'volume', 'rsi'\]"):
        check_bf16(
            package,
            PrecisionData(data=str(csv), splits="0.6,0.2", columns=["rsi", "close", "volume"]),
        )
