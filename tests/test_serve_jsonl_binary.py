"""JSON lines' binary form: base64 float32 windows in, base64 forecasts out, on a real server.

The same server answers JSON numbers and the binary form alike; a malformed binary field is
refused with a code naming what was expected, and the server goes on.
"""

from __future__ import annotations

import base64

import numpy as np
import orjson
import pytest
from conftest import random_windows
from test_serve_jsonl import start


def binary(array: np.ndarray) -> dict:
    data = np.ascontiguousarray(array, "<f4")
    return {"base64": base64.b64encode(data.tobytes()).decode(), "shape": list(data.shape)}


def decoded(field: dict) -> np.ndarray:
    assert field["datatype"] == "FP32"
    return np.frombuffer(base64.b64decode(field["base64"]), "<f4").reshape(field["shape"])


def line(**fields) -> bytes:
    return orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


BAD = [
    ({"base64": "not base64!", "shape": [64, 3]}, "invalid_input", "not valid base64"),
    ({"base64": "AAAA", "shape": [64, 3]}, "invalid_request", "binary data"),  # 3 bytes
    ({"base64": base64.b64encode(b"\0" * 8).decode()}, "invalid_input", "shape"),
    ({"base64": "AAAA", "shape": ["64", 3]}, "invalid_input", "shape"),
    ({"base64": 12, "shape": [1]}, "invalid_request", "base64"),
    ({"base64": "AAAA", "shape": [1], "dtype": "f4"}, "invalid_request", "unknown field"),
    ({"base64": "AAAAAA==", "shape": [1], "datatype": "FP16"}, "invalid_request", "datatype"),
]


def test_binary_windows_and_forecasts_match_json(small_package, small_engine):
    windows = random_windows(3, 64, 3, seed=11)
    nan_window = windows[0].copy()
    nan_window[5, 1] = np.nan
    lines = [
        line(request_id="json", past_values=windows[0]),
        line(request_id="b64", past_values=binary(windows[0])),
        line(request_id="b64-out", past_values=binary(windows[0]), response_encoding="base64"),
        line(request_id="batch", past_values=binary(windows), response_encoding="base64"),
        line(request_id="nan", past_values=binary(nan_window)),
        line(request_id="enc", past_values=windows[0], response_encoding="xml"),
        *[line(request_id=f"bad{i}", past_values=field) for i, (field, _, _) in enumerate(BAD)],
        line(request_id="after", past_values=binary(windows[1]), channels=[2]),
    ]
    server = start(small_package)
    out, err = server.communicate(b"".join(lines), timeout=120)
    assert server.returncode == 0, err.decode()
    answers = {a["request_id"]: a for a in map(orjson.loads, out.splitlines())}
    assert len(answers) == len(lines)
    expected = small_engine.predict(windows)
    np.testing.assert_allclose(answers["json"]["predictions"], expected[0], atol=1e-5)
    np.testing.assert_allclose(answers["b64"]["predictions"], expected[0], atol=1e-5)
    np.testing.assert_allclose(decoded(answers["b64-out"]["predictions"]), expected[0], atol=1e-5)
    assert answers["b64-out"]["predictions"]["shape"] == [16, 3]
    np.testing.assert_allclose(decoded(answers["batch"]["predictions"]), expected, atol=1e-5)
    assert answers["nan"]["error"]["code"] == "invalid_input"
    assert "NaN" in answers["nan"]["error"]["message"]
    assert answers["enc"]["error"]["code"] == "invalid_request"
    assert "response_encoding" in answers["enc"]["error"]["message"]
    for i, (_, code, words) in enumerate(BAD):
        error = answers[f"bad{i}"]["error"]
        assert (error["code"], words in error["message"]) == (code, True), error
    np.testing.assert_allclose(answers["after"]["predictions"], expected[1][:, [2]], atol=1e-5)


@pytest.mark.parametrize("raw", [False, True])
def test_binary_form_through_the_codec_alone(raw):
    """The codec hands the core float32 straight from the bytes (no Python numbers)."""
    from ovcast.serve import jsonl_codec as codec
    from ovcast.serve.core import SCALED_INPUT

    window = random_windows(1, 8, 2, seed=3)[0]
    request = codec.decode(line(request_id=1, past_values=binary(window), raw=raw))
    array = request.request.inputs[SCALED_INPUT]
    assert array.dtype == np.float32 and array.shape == (8, 2)
    np.testing.assert_array_equal(array, window)
    assert request.request.raw is raw and not request.base64_output
