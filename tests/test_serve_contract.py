"""The contract both front ends keep: the same inputs are accepted or refused, with the same
error codes, and the same answers (raw, channels, batches, several models).

Each case is written once as JSON-lines-shaped fields and sent through JSON lines (a real
``ovcast serve --mode jsonl`` process) and through KServe v2 HTTP (in-process, on loopback).
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from conftest import random_windows
from serving import JsonLinesProcess, http_server, request

from ovcast import Engine

WINDOW = random_windows(1, 64, 3, seed=21)[0]
POSITIVE = np.abs(WINDOW) + 1  # raw volumes are positive (log-scaled channel)
BATCH = random_windows(2, 64, 3, seed=22)
HTTP_STATUS = {"invalid_input": 400, "invalid_request": 400, "model_not_found": 404,
               "model_output_not_finite": 422}  # fmt: skip


@pytest.fixture(scope="module", params=["jsonl", "http"])
def front_end(request, small_package, wide_package):
    models = [f"small={small_package}", f"wide={wide_package}"]
    options = {"max_request_batch": 4}
    if request.param == "jsonl":
        server = JsonLinesProcess(
            *(a for m in models for a in ("--model", m)), "--max-request-batch", "4"
        )
        yield _JsonLines(server)
        assert server.close() == 0
    else:
        with http_server(*models, **options) as (_, port):
            yield _Http(port)


class _JsonLines:
    def __init__(self, server: JsonLinesProcess) -> None:
        self.server = server

    def __call__(self, model: str, values, **fields):
        line = {"request_id": "c", "model": model, "past_values": values, **fields}
        answer = self.server.send(orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        assert answer["request_id"] == "c"
        if answer["success"]:
            return True, np.asarray(answer["predictions"], np.float32)
        return False, (answer["error"]["code"], answer["error"]["message"])


class _Http:
    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(self, model: str, values, **fields):
        try:
            shape = list(np.shape(values))
        except ValueError:  # ragged: say what the outer lists claim
            shape = [len(values), len(values[0])]
        tensor = {"name": "past_values", "shape": shape, "datatype": "FP32", "data": values}
        body = {"id": "c", "inputs": [tensor], "parameters": fields}
        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
        status, answer, _ = request(self.port, "POST", f"/v2/models/{model}/infer", data)
        if status == 200:
            assert answer["id"] == "c"
            out = answer["outputs"][0]
            return True, np.reshape(np.asarray(out["data"], np.float32), out["shape"])
        assert status == HTTP_STATUS.get(answer["code"]), (status, answer)
        return False, (answer["code"], answer["error"])


def test_forecasts_match_the_engine(front_end, small_package):
    engine = Engine(small_package)
    ok, out = front_end("small", WINDOW)
    assert ok and out.shape == (16, 3)
    np.testing.assert_allclose(out, engine.predict(WINDOW), atol=1e-5)
    ok, out = front_end("small", BATCH)
    assert ok and out.shape == (2, 16, 3)
    np.testing.assert_allclose(out, engine.predict(BATCH), atol=1e-5)
    ok, out = front_end("small", WINDOW, channels=[2, 0])
    np.testing.assert_allclose(out, engine.predict(WINDOW)[:, [2, 0]], atol=1e-5)
    ok, out = front_end("small", POSITIVE, raw=True, channels=[0])
    assert ok
    np.testing.assert_allclose(out, engine.forecast(POSITIVE)[:, [0]], rtol=1e-5)


REFUSED = [
    ("strings", "small", [["1", "2", "3"]] * 64, {}, "invalid_input", "strings"),
    ("booleans", "small", [[True, False, True]] * 64, {}, "invalid_input", "booleans"),
    ("one boolean", "small", [[1.0, 2.0, True]] + [[1.0, 2.0, 3.0]] * 63, {}, "invalid_input",
     "booleans"),
    ("null", "small", [[1.0, None, 3.0]] * 64, {}, "invalid_input", "expected numbers"),
    ("overflows float32", "small", np.full((64, 3), 1e39).tolist(), {}, "invalid_input",
     "1e+39 (first at index [0, 0]), beyond float32's range"),
    ("1e300 is not NaN", "small", [[1e300, 1.0, 2.0]] + [[1.0, 2.0, 3.0]] * 63, {},
     "invalid_input", "1e+300 (first at index [0, 0]), beyond float32's range"),
    ("wrong shape", "small", np.zeros((63, 3)).tolist(), {}, "invalid_input",
     "expected [64, 3] or [batch, 64, 3]"),
    ("ragged", "small", [[1.0, 2.0], [3.0]], {}, "invalid_input", "ragged"),
    ("empty", "small", [], {}, "invalid_input", "has shape [0]"),
    ("channel out of range", "small", WINDOW, {"channels": [5]}, "invalid_input",
     "expected indices 0..2"),
    ("channels not a list", "small", WINDOW, {"channels": "all"}, "invalid_request", "channels"),
    ("raw not a boolean", "small", WINDOW, {"raw": "yes"}, "invalid_request", "raw"),
    ("raw without a scaler", "wide", np.zeros((64, 4)).tolist(), {"raw": True}, "invalid_input",
     "carries no scaler"),
    ("too many windows", "small", np.zeros((5, 64, 3)).tolist(), {}, "invalid_input",
     "at most 4 per request"),
    ("unknown model", "nope", WINDOW, {}, "model_not_found", "unknown model 'nope'"),
    ("finite input, non-finite forecast", "small", np.full((64, 3), 3e38).tolist(), {},
     "model_output_not_finite", "not finite"),
]  # fmt: skip


@pytest.mark.parametrize(
    "model, values, fields, code, message", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_the_same_inputs_are_refused_with_the_same_code(
    front_end, model, values, fields, code, message
):
    ok, (got_code, got_message) = front_end(model, values, **fields)
    assert not ok and got_code == code and message in got_message, got_message


def test_every_problem_is_named_in_one_answer(front_end):
    ok, (code, message) = front_end("small", np.zeros((63, 3)).tolist(), channels=[7, 0])
    assert not ok and code == "invalid_input"
    assert "has shape [63, 3]" in message and "channels [7] out of range" in message
    ok, _ = front_end("small", WINDOW)
    assert ok  # and the server goes on
