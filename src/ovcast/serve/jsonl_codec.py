"""The JSON-lines wire format: request lines to core requests, results to response lines.

Request (one JSON object per line):
    {"request_id": "1", "timestamp_ms": 1705678900000, "past_values": [[...7 floats], ...512 rows],
     "channels": [0], "raw": false, "model": "btc"}
    request_id      string or integer, echoed back (required)
    timestamp_ms    integer, echoed back (optional)
    past_values     [context][channels] numbers, or [batch][context][channels] (required); or
                    {"base64": "...", "shape": [512, 7]}: little-endian float32, row-major
                    (the binary form: about half the bytes, and decoded without a Python
                    number per value)
    inputs          {"name": values} further named inputs, for models that take them
                    (TinyTimeMixer: freq_token, future_exogenous, past_observed_mask; one
                    window's values without the batch axis, e.g. "freq_token": 7; each as
                    numbers or, for arrays, in the binary form)
    series_id       raw: whose scaler, for packages with one scaler per series (optional)
    response_encoding  "json" (default) or "base64": the predictions in the binary form
    channels        output channel indices (optional; default: the server's, else all)
    raw             true: past_values in raw units, forecast inverse-scaled with the
                    package's scaler (optional; default: the server's --raw)
    model, version  which served model (optional while the server serves one)

Response: {"request_id", "timestamp_ms", "predictions": [horizon][channels], "inference_time_ms",
"success": true} (predictions as {"base64", "shape", "datatype"} when asked for); or {"request_id" (null if unreadable), "success": false,
"error": {"code", "message"}}.

Commands (same line protocol), answered {"request_id", "success": true, "event": ...}:
    {"command": "reload"}                      re-read every model and hot-swap it (as SIGHUP)
    {"command": "reload", "model": NAME, "model_dir": DIR}   swap NAME to the package DIR
    {"command": "load" | "unload", "model": NAME}            the repository's model NAME
    {"command": "index"}                       every model and its state
    {"command": "metrics"}                     the Prometheus text of GET /metrics
A failed load or reload answers code "reload_failed" and the old model keeps serving.

Thin on purpose: numbers are converted by ``tensors`` and checked by the core, so this layer
only knows the field names. Decoding and encoding go through orjson straight to and from
numpy arrays: no per-float Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidRequestError, ServingError
from . import tensors
from .core import SCALED_INPUT, InferRequest, InferResult

COMMANDS = ("reload", "load", "unload", "index", "metrics")
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


ENCODINGS = ("json", "base64")


@dataclass
class LineRequest:
    request: InferRequest
    timestamp_ms: int | None
    base64_output: bool = False


@dataclass
class Command:
    request_id: str | int | None
    name: str
    model: str | None
    model_dir: str | None  # reload only: a package folder (the pipe's writer is trusted)


def decode(line: bytes | bytearray) -> LineRequest | Command:
    """Parse one request line; raises InvalidRequestError only when nothing can be read."""
    if not line.strip():
        raise InvalidRequestError(
            "empty line; expected one JSON request object per line", code="empty_line"
        )
    data = tensors.json_object(line, what="the line", expected="a JSON request object")
    request_id = data.get("request_id")
    if "command" in data:
        return _decode_command(data, request_id)
    problems: list[tensors.Problem] = []

    def problem(message: str) -> None:
        problems.append(("invalid_request", message))

    if request_id is None:
        problem("missing 'request_id' (string or integer)")
    elif not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
        problem(f"'request_id' must be a string or integer, got {type(request_id).__name__}")
        request_id = None
    timestamp = data.get("timestamp_ms")
    if timestamp is not None and (not isinstance(timestamp, int) or isinstance(timestamp, bool)):
        problem(f"'timestamp_ms' must be an integer, got {type(timestamp).__name__}")
        timestamp = None
    channels, raw = tensors.request_options(data, "", problems)
    encoding = data.get("response_encoding", "json")
    if encoding not in ENCODINGS:
        problem(f"'response_encoding' must be one of {list(ENCODINGS)}")
    series_id = tensors.series_id_option(data, "", problems)
    model, version = data.get("model"), data.get("version")
    for field, value in (("model", model), ("version", version)):
        if value is not None and not isinstance(value, str):
            problem(f"'{field}' must be a string")
    values: dict[str, Any] = {}
    if "past_values" in data:
        values[SCALED_INPUT] = data["past_values"]
    extra = data.get("inputs")
    if isinstance(extra, dict):
        values.update(extra)
    elif extra is not None:
        problem("'inputs' must be an object {\"name\": values}")
    inputs: dict[str, np.ndarray | None] = {}
    for name, value in values.items():
        try:
            if isinstance(value, dict):
                inputs[name] = tensors.from_base64(value, name=name)
            else:
                inputs[name] = tensors.from_json(value, name=name, source=line)
        except InvalidRequestError as exc:
            problems.append((exc.code, str(exc)))
            inputs[name] = None
    request = InferRequest(
        inputs,
        model=model if isinstance(model, str) else None,
        version=version if isinstance(version, str) else None,
        channels=channels,
        raw=raw,
        series_id=series_id,
        request_id=request_id,
        problems=problems,
    )
    return LineRequest(request, timestamp, encoding == "base64")


def _decode_command(data: dict[str, Any], request_id: Any) -> Command:
    name, model, model_dir = data["command"], data.get("model"), data.get("model_dir")
    if name not in COMMANDS:
        raise InvalidRequestError(
            f"unknown command {name!r}; expected one of {list(COMMANDS)}", request_id=request_id
        )
    for field, value in (("model", model), ("model_dir", model_dir)):
        if value is not None and not isinstance(value, str):
            raise InvalidRequestError(f"'{field}' must be a string", request_id=request_id)
    if name == "reload" and model is not None and model_dir is None and "/" in model:
        model, model_dir = None, model  # the older form: {"command": "reload", "model": DIR}
    if name in ("load", "unload") and model is None:
        raise InvalidRequestError(f"'{name}' needs 'model': a model name", request_id=request_id)
    if model_dir is not None and name != "reload":
        raise InvalidRequestError("only 'reload' takes 'model_dir'", request_id=request_id)
    return Command(request_id, name, model, model_dir)


def encode_result(result: InferResult, timestamp_ms: int | None, base64: bool = False) -> bytes:
    form = tensors.to_base64 if base64 else (lambda array: array)
    outputs = iter(result.outputs.values())
    response: dict[str, Any] = {
        "request_id": result.request_id,
        "timestamp_ms": timestamp_ms,
        "predictions": form(next(outputs)),
        "inference_time_ms": result.inference_ms,
        "success": True,
    }
    if len(result.outputs) > 1:
        response["outputs"] = {name: form(a) for name, a in list(result.outputs.items())[1:]}
    return encode(response)


def encode_error(error: ServingError) -> bytes:
    return encode(
        {
            "request_id": error.request_id,
            "success": False,
            "error": {"code": error.code, "message": str(error)},
        }
    )


def encode_event(request_id: Any, event: str, **fields: Any) -> bytes:
    return encode({"request_id": request_id, "success": True, "event": event, **fields})


def encode(response: dict[str, Any]) -> bytes:
    """One response line, newline included."""
    return orjson.dumps(response, option=_DUMPS_OPTIONS) + b"\n"
