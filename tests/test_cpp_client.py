"""The C++ client, compiled with the system g++ and run against the real server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_windows

CLIENT_DIR = Path(__file__).resolve().parents[1] / "clients" / "cpp"
GXX = shutil.which("g++")


@pytest.fixture(scope="module")
def example_binary(tmp_path_factory) -> Path:
    if GXX is None:
        pytest.skip("g++ is not installed (apt-get install g++)")
    binary = tmp_path_factory.mktemp("cpp") / "example"
    subprocess.run(
        [
            GXX,
            "-std=c++17",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(binary),
            str(CLIENT_DIR / "example.cpp"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return binary


def parse(line: str) -> np.ndarray:
    return np.array([float(v) for v in line.split("first=")[1].split()])


def test_cpp_client_forecasts_restarts_and_times_out(
    example_binary, small_package, small_engine, tmp_path
):
    window = random_windows(1, 64, 3, seed=11)[0]
    np.savetxt(tmp_path / "window.csv", window, delimiter=",", fmt="%.9g")
    result = subprocess.run(
        [str(example_binary), str(small_package), str(tmp_path / "window.csv"), sys.executable],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    expected = small_engine.predict(window)[0]
    assert "steps=16 channels=3" in lines["FORECAST"]
    np.testing.assert_allclose(parse(lines["FORECAST"]), expected, atol=1e-5)
    assert lines["BAD_INPUT"] == "BAD_INPUT error=server_error code=invalid_input"
    assert "restarted=1" in lines["RESTARTED"]  # the killed child was replaced...
    np.testing.assert_allclose(parse(lines["RESTARTED"]), expected, atol=1e-5)  # ...and answered
    assert lines["TIMEOUT"] == "TIMEOUT error=timeout"
    np.testing.assert_allclose(
        parse(lines["RECOVERED"]), expected, atol=1e-5
    )  # late answer skipped
    assert lines["RESTARTS"] == "RESTARTS 1"
    assert "restart: server died" in result.stderr


def test_cpp_client_reports_a_server_that_cannot_start(example_binary, tmp_path):
    np.savetxt(tmp_path / "window.csv", np.zeros((64, 3)), delimiter=",")
    result = subprocess.run(
        [
            str(example_binary),
            str(tmp_path / "missing"),
            str(tmp_path / "window.csv"),
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "could not start the ovcast server" in result.stderr
    assert "no model package at" in result.stderr  # the server's own reason, on inherited stderr
