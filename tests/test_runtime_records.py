"""The machine-specific records in ovcast.json are checked, never taken on trust.

A hand-edited or copied manifest must not make the Engine compute in bf16 (the record's
verdict is re-checked against ovcast's own tolerances, on this machine and OpenVINO
release), and a malformed record never crashes info, predict or serve: f32 with the reason,
or a ModelPackageError naming the field.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil

import numpy as np
import pytest
from conftest import random_windows

from ovcast import Engine, ModelPackage, ModelPackageError
from ovcast.cli import main
from ovcast.runtime import precision
from ovcast.runtime.precision import bf16_evidence, choose_precision
from ovcast.runtime.records import this_machine

BF16_CPU = ["fma", "avx2", "avx512f", "avx512_bf16"]


def _record() -> dict:
    """A record that counts here: measured on this machine, within ovcast's tolerances."""
    return {
        "within_tolerance": True,
        "forecast_max_abs_change": 3e-3,
        "forecast_rms_change": 2e-3,
        "metric": {"windows": "64 synthetic windows", "mse_change": 2e-4, "mae_change": 1e-4},
        "tolerance": {"metric_change": 1e-3, "forecast_rms_change": 1e-2},
        "measured_on": this_machine(),
        "at": "2026-01-01T00:00:00Z",
    }


def _forged(edit) -> dict:
    record = copy.deepcopy(_record())
    edit(record)
    return record


FORGED = {
    # claims within tolerance, but the figures are far outside ovcast's
    "rms 50%": lambda r: r.update(forecast_rms_change=0.5),
    "mse +40%": lambda r: r["metric"].update(mse_change=0.4),
    # ... and widens the tolerance written in the file: ovcast's own is what counts
    "tolerance 1000%": lambda r: r.update(
        forecast_rms_change=0.5, tolerance={"metric_change": 10, "forecast_rms_change": 10}
    ),
    "a string verdict": lambda r: r.update(within_tolerance="false"),
    "rms NaN": lambda r: r.update(forecast_rms_change=float("nan")),
    "rms negative": lambda r: r.update(forecast_rms_change=-1.0),
    "no metric": lambda r: r.pop("metric"),
    "no mae_change": lambda r: r["metric"].pop("mae_change"),
    "metric a list": lambda r: r.update(metric=[1, 2]),
    "no measured_on": lambda r: r.pop("measured_on"),
    "another CPU": lambda r: r["measured_on"].update(cpu="Intel Xeon 6", isa="amx_bf16"),
    "another family": lambda r: r["measured_on"].update(cpu_family_model="25/17"),
    "another OpenVINO": lambda r: r["measured_on"].update(openvino="2024.0.0-14509"),
}


@pytest.fixture
def package_copy(tmp_path, small_package):
    shutil.copytree(small_package, tmp_path / "pkg")
    return tmp_path / "pkg"


def _write(package_dir, runtime_config) -> None:
    path = package_dir / "ovcast.json"
    manifest = json.loads(path.read_text())
    manifest["runtime_config"] = runtime_config
    path.write_text(json.dumps(manifest))


def test_an_honest_record_measured_here_counts(small_package):
    manifest = ModelPackage.load(small_package).manifest
    manifest.runtime_config["precision"] = {"bf16": _record()}
    assert choose_precision(manifest, "auto", BF16_CPU).hint == "bf16"
    assert bf16_evidence(manifest).within


@pytest.mark.parametrize("name", sorted(FORGED))
def test_a_forged_or_foreign_bf16_record_computes_in_f32(small_package, name, caplog):
    manifest = ModelPackage.load(small_package).manifest
    manifest.runtime_config["precision"] = {"bf16": _forged(FORGED[name])}
    choice = choose_precision(manifest, "auto", BF16_CPU)
    assert choice.hint == "f32", choice
    evidence = bf16_evidence(manifest)
    assert not evidence.within
    if "measured_on" not in name and "another" not in name and evidence.problem:
        assert "runtime_config.precision.bf16." in evidence.problem  # names the field
    if "1000%" in name:
        assert "tolerance 1%" in evidence.summary()  # ovcast's tolerance, not the file's


@pytest.mark.parametrize(
    "runtime_config",
    [
        {"precision": [1, 2]},
        {"precision": {"bf16": "yes"}},
        {"precision": {"bf16": _forged(FORGED["no metric"])}},
        {"precision": {"bf16": _forged(FORGED["no measured_on"])}},
    ],
)
def test_a_malformed_precision_record_never_crashes_info_or_predict(
    package_copy, runtime_config, capsys, monkeypatch
):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    _write(package_copy, runtime_config)
    assert main(["info", str(package_copy)]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("computes in (here)"))
    assert "f32 (the bf16 record " in line and "runtime_config.precision" in line
    engine = Engine(package_copy, warmup=False)
    assert engine.precision.hint == "f32"
    assert engine.predict(random_windows(1, 64, 3)[0]).shape == (16, 3)


@pytest.mark.parametrize(
    ("latency", "field"),
    [
        ([1, 2], "runtime_config.latency"),
        ({"INFERENCE_NUM_THREADS": "4"}, "runtime_config.latency.INFERENCE_NUM_THREADS"),
        ({"INFERENCE_NUM_THREADS": 0}, "runtime_config.latency.INFERENCE_NUM_THREADS"),
        ({"static_batch1": "no"}, "runtime_config.latency.static_batch1"),
        ({"ENABLE_CPU_PINNING": 1}, "runtime_config.latency.ENABLE_CPU_PINNING"),
        ({"THREADS_PLEASE": 64}, "runtime_config.latency.THREADS_PLEASE"),
    ],
)
def test_a_malformed_tuned_config_is_refused_naming_the_field(package_copy, latency, field, capsys):
    _write(package_copy, {"latency": latency})
    with pytest.raises(ModelPackageError, match=field.replace(".", r"\.")):
        Engine(package_copy, warmup=False)
    assert main(["info", str(package_copy)]) == 0  # info still shows the package, and why
    assert field in capsys.readouterr().out


def test_a_tuned_config_from_another_machine_is_ignored_with_a_warning(package_copy, caplog):
    measured = {**this_machine(), "cpu": "Intel Xeon Platinum 8480+", "score": 1.0}
    _write(
        package_copy,
        {"latency": {"INFERENCE_NUM_THREADS": 64, "NUM_STREAMS": 8, "measured": measured}},
    )
    with caplog.at_level(logging.WARNING, logger="ovcast"):
        engine = Engine(package_copy, warmup=False)
    assert engine.config["INFERENCE_NUM_THREADS"] != 64 and engine.config["NUM_STREAMS"] == 1
    assert "Xeon Platinum" in caplog.text and "ignoring the tuned latency config" in caplog.text
    measured = {**this_machine(), "score": 1.0}  # the same config measured here is applied
    _write(package_copy, {"latency": {"INFERENCE_NUM_THREADS": 1, "measured": measured}})
    assert Engine(package_copy, warmup=False).config["INFERENCE_NUM_THREADS"] == 1


def test_bf16_asked_against_an_outside_record_warns(small_package, monkeypatch, caplog):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    manifest = ModelPackage.load(small_package).manifest
    outside = _forged(lambda r: r.update(within_tolerance=False, forecast_rms_change=0.05))
    manifest.runtime_config["precision"] = {"bf16": outside}
    monkeypatch.setenv(precision.PRECISION_ENV, "bf16")  # as `ovcast --precision bf16` does
    with caplog.at_level(logging.WARNING, logger="ovcast"):
        assert choose_precision(manifest, None, BF16_CPU).hint == "bf16"
    assert "OUTSIDE tolerance" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ovcast"):  # bench/tune's own bf16 engines
        assert choose_precision(manifest, "bf16", BF16_CPU).hint == "bf16"
    assert not caplog.text


def test_an_isa_cap_below_bf16_is_what_info_reports(small_package, monkeypatch):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    manifest = ModelPackage.load(small_package).manifest
    manifest.runtime_config["precision"] = {"bf16": _record()}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    choice = choose_precision(manifest, None, BF16_CPU)
    assert choice.hint == "f32" and "ONEDNN_MAX_CPU_ISA=AVX2" in choice.reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert choose_precision(manifest, None, BF16_CPU).hint == "bf16"


def test_in_bf16_a_window_gets_the_same_answer_alone_and_in_a_batch(small_package):
    """Single windows and batches go through one compiled model in bf16: a client's answer
    never depends on whether other requests were batched with it (they round differently)."""
    engine = Engine(small_package, precision_hint="bf16", warmup=False)
    assert not engine.static_batch1
    windows = random_windows(7, 64, 3, seed=11)
    batched = engine.predict(windows)
    alone = np.stack([engine.predict(w) for w in windows])
    np.testing.assert_array_equal(alone, batched)
    np.testing.assert_array_equal(engine.predict_many(list(windows)), batched)
    assert Engine(small_package, precision_hint="f32", warmup=False).static_batch1
