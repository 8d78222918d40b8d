"""Pure functions of the runtime: scalers and the usable-core count."""

from __future__ import annotations

import numpy as np
import pytest

from ovcast import InvalidInputError, ModelPackageError, Scaler
from ovcast.runtime.cpu import cgroup_quota_cores, cpu_config, usable_cores


def test_scaler_fit_transform_inverse_round_trip():
    rng = np.random.default_rng(0)
    raw = np.column_stack(
        [
            100 + rng.standard_normal(500).cumsum(),
            rng.exponential(50, 500),
            rng.uniform(20, 80, 500),
        ]
    )
    scaler = Scaler.fit(raw, ["standard", "log_standard", "minmax"], ["close", "volume", "rsi"])
    scaled = scaler.transform(raw)
    assert abs(scaled[:, 0].mean()) < 1e-5 and abs(scaled[:, 0].std() - 1) < 1e-4
    assert abs(scaled[:, 1].mean()) < 1e-5  # standard after log1p
    assert scaled[:, 2].min() == pytest.approx(0, abs=1e-6)
    assert scaled[:, 2].max() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(scaler.inverse_transform(scaled), raw, rtol=1e-4)
    again = Scaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.transform(raw), scaled)
    assert again.names == ("close", "volume", "rsi")


def test_scaler_hand_computed_and_channel_subset():
    scaler = Scaler(("standard", "minmax"), np.array([10.0, 0.0]), np.array([2.0, 4.0]))
    np.testing.assert_allclose(scaler.transform(np.array([[12.0, 1.0]])), [[1.0, 0.25]])
    # Only the close (channel 0) came back from the model: inverse with channels=[0].
    np.testing.assert_allclose(scaler.inverse_transform(np.array([[1.5]]), channels=[0]), [[13.0]])


def test_scaler_errors():
    with pytest.raises(ModelPackageError, match="unknown scaler kinds"):
        Scaler(("zscore",), np.zeros(1), np.ones(1))
    with pytest.raises(ModelPackageError, match="non-zero"):
        Scaler(("standard",), np.zeros(1), np.zeros(1))
    scaler = Scaler(("standard",), np.zeros(1), np.ones(1))
    with pytest.raises(InvalidInputError, match="expected 1 channels"):
        scaler.transform(np.zeros((4, 2)))
    with pytest.raises(ModelPackageError, match="invalid scaler"):
        Scaler.from_dict({"channels": [{"kind": "standard"}]})


def test_constant_channel_does_not_divide_by_zero():
    scaler = Scaler.fit(np.ones((10, 1)))
    assert np.all(scaler.transform(np.ones((3, 1))) == 0)


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.0),
        ({}, None),
    ],
)
def test_cgroup_quota(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_quota_cores(tmp_path) == expected


def test_usable_cores_takes_the_quota_into_account(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    (tmp_path / "cpu.max").write_text("150000 100000")
    assert usable_cores(tmp_path) == 2  # ceil(1.5), not the 8 CPUs in the mask
    (tmp_path / "cpu.max").write_text("max 100000")
    assert usable_cores(tmp_path) == 8


def test_cpu_config_modes():
    assert cpu_config("latency", cores=4)["NUM_STREAMS"] == 1
    assert cpu_config("throughput", cores=4)["NUM_STREAMS"] == 4
    assert cpu_config("latency", cores=4, threads=1)["INFERENCE_NUM_THREADS"] == 1
    assert "AFFINITY" not in cpu_config("latency")  # removed from OpenVINO; pinning replaces it
