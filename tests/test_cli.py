"""The ovcast command line: round trip, help, and user errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ovcast.cli import main


def ovcast(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "ovcast", *args], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_convert_info_predict_round_trip(tmp_path, small_checkpoint, small_engine):
    pytest.importorskip("torch", reason="conversion needs the ovcast[convert] extra")
    out = tmp_path / "pkg"
    converted = ovcast("convert", str(small_checkpoint), str(out), "--name", "tiny")
    assert "parity fp32 vs PyTorch: max abs error" in converted.stdout

    info = ovcast("info", str(out))
    assert "PatchTSTForPrediction" in info.stdout and "64 x 3" in info.stdout
    manifest = json.loads(ovcast("info", str(out), "--json").stdout)
    assert manifest["name"] == "tiny"

    window = np.abs(np.random.default_rng(0).standard_normal((64, 3))).astype(np.float32)
    rows = "\n".join(",".join(f"{v:.6f}" for v in row) for row in window)
    (tmp_path / "w.csv").write_text(
        "time,close,volume,rsi\n"
        + "\n".join(f"2024-01-01T{i:04d},{line}" for i, line in enumerate(rows.splitlines()))
    )
    window = np.loadtxt(
        tmp_path / "w.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3), dtype=np.float32
    )
    stdout = json.loads(ovcast("predict", str(out), "--input", str(tmp_path / "w.csv")).stdout)
    np.testing.assert_allclose(stdout["predictions"], small_engine.predict(window), atol=1e-5)

    ovcast(
        "predict",
        str(out),
        "-i",
        str(tmp_path / "w.csv"),
        "--raw",
        "--channels",
        "0",
        "-o",
        str(tmp_path / "close.npy"),
    )
    close = np.load(tmp_path / "close.npy")
    np.testing.assert_allclose(close, small_engine.forecast(window)[:, :1], rtol=1e-5)


def test_missing_model_is_one_clear_line(tmp_path, capsys):
    np.save(tmp_path / "w.npy", np.zeros((64, 3)))
    code = main(["predict", str(tmp_path / "models"), "--input", str(tmp_path / "w.npy")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"no model package at {tmp_path / 'models'}" in err and "ovcast convert" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    result = ovcast("--debug", "info", str(tmp_path / "nope"), check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_bad_input_file_and_shape(tmp_path, small_package, capsys):
    (tmp_path / "w.json").write_text('{"past_values": [[1, 2, 3]]}')
    assert main(["predict", str(small_package), "--input", str(tmp_path / "w.json")]) == 1
    assert "expected [64, 3]" in capsys.readouterr().err
    (tmp_path / "w.txt").write_text("1,2,3")
    assert main(["predict", str(small_package), "--input", str(tmp_path / "w.txt")]) == 1
    assert "expected .npy, .json, .csv or .parquet" in capsys.readouterr().err
    assert main(["predict", str(small_package), "--input", str(tmp_path / "none.csv")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_help_teaches():
    result = ovcast("--help")
    assert "typical flow" in result.stdout and "convert" in result.stdout
    assert "examples:" in ovcast("convert", "--help").stdout
    assert main([]) == 2
