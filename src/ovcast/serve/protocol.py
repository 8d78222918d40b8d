"""The JSON-lines forecast protocol, independent of any transport.

Request (one JSON object per line):
    {"request_id": "1", "timestamp_ms": 1705678900000, "past_values": [[...7 floats], ...512 rows],
     "channels": [0], "raw": false}
    request_id      string or integer, echoed back (required)
    timestamp_ms    integer, echoed back (optional)
    past_values     [context][channels] numbers, or [batch][context][channels] (required)
    channels        output channel indices (optional; default: the server's, else all)
    raw             true: past_values in raw units, forecast inverse-scaled with the
                    package's scaler (optional; default: the server's --raw)

Response: {"request_id", "timestamp_ms", "predictions": [horizon][channels], "inference_time_ms",
"success": true}; or {"request_id" (null if unreadable), "success": false,
"error": {"code", "message"}}.

Commands (same line protocol): {"request_id": "r", "command": "reload", "model": "DIR"} loads
DIR (default: the served package, re-read), checks it and switches; answered with
{"request_id", "success": true, "event": "reloaded", "model", "model_dir"} or an error with
code "reload_failed" while the old model keeps serving.

Decoding and encoding go through orjson straight to and from numpy arrays: no per-float
Python loops.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidInputError, ModelPackageError, OvcastError
from ..runtime.engine import Engine
from ..runtime.slot import EngineSlot

# Error codes a client can branch on.
EMPTY_LINE = "empty_line"
LINE_TOO_LONG = "line_too_long"
INVALID_JSON = "invalid_json"
INVALID_REQUEST = "invalid_request"
INVALID_INPUT = "invalid_input"
INTERNAL = "internal_error"
RELOAD_FAILED = "reload_failed"
COMMANDS = ("reload",)

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class Request:
    request_id: str | int
    timestamp_ms: int | None
    past_values: list  # nested lists as decoded; the engine checks and converts
    channels: list[int] | None
    raw: bool


@dataclass
class Command:
    request_id: str | int | None
    name: str
    model: str | None


class ProtocolError(Exception):
    """A request that gets an error response; carries the code and the id if it was read."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


def decode(line: bytes, *, default_raw: bool = False) -> Request | Command:
    """Parse and check one request line; raises ProtocolError naming what was expected."""
    if not line.strip():
        raise ProtocolError(EMPTY_LINE, "empty line; expected one JSON request object per line")
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(INVALID_JSON, f"not valid JSON (or not UTF-8): {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_REQUEST, f"expected a JSON object, got {type(data).__name__}")
    request_id = data.get("request_id")
    if "command" in data:
        return _decode_command(data, request_id)
    problems = []
    if request_id is None:
        problems.append("missing 'request_id' (string or integer)")
    elif not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
        problems.append(
            f"'request_id' must be a string or integer, got {type(request_id).__name__}"
        )
        request_id = None
    timestamp = data.get("timestamp_ms")
    if timestamp is not None and (not isinstance(timestamp, int) or isinstance(timestamp, bool)):
        problems.append(f"'timestamp_ms' must be an integer, got {type(timestamp).__name__}")
    channels = data.get("channels")
    if channels is not None and not (
        isinstance(channels, list)
        and channels
        and all(isinstance(c, int) and not isinstance(c, bool) for c in channels)
    ):
        problems.append("'channels' must be a non-empty list of channel indices")
    raw = data.get("raw", default_raw)
    if not isinstance(raw, bool):
        problems.append("'raw' must be true or false")
    past_values = data.get("past_values")
    if past_values is None:
        problems.append("missing 'past_values' ([context][channels] numbers)")
    elif not isinstance(past_values, list):
        problems.append(f"'past_values' must be a nested list, got {type(past_values).__name__}")
    if problems:
        raise ProtocolError(INVALID_REQUEST, "; ".join(problems), request_id)
    # The engine converts (in C) and checks shape, numbers-only and finiteness.
    return Request(request_id, timestamp, past_values, channels, raw)


def _decode_command(data: dict[str, Any], request_id: Any) -> Command:
    name, model = data["command"], data.get("model")
    if name not in COMMANDS:
        raise ProtocolError(
            INVALID_REQUEST, f"unknown command {name!r}; expected one of {COMMANDS}", request_id
        )
    if model is not None and not isinstance(model, str):
        raise ProtocolError(INVALID_REQUEST, "'model' must be a package folder path", request_id)
    return Command(request_id, name, model)


class Forecaster:
    """Runs decoded requests on an engine; shared by the JSON-lines and HTTP front ends."""

    def __init__(self, slot: EngineSlot, *, channels: Sequence[int] | None = None) -> None:
        self.slot = slot
        self.default_channels = list(channels) if channels is not None else None
        if self.default_channels is not None:
            self._check_channels(self.default_channels)

    @property
    def engine(self) -> Engine:
        return self.slot.engine

    def run(self, request: Request) -> dict[str, Any]:
        """The success response for a request, or ProtocolError."""
        engine = self.slot.engine  # once: a reload during this request does not affect it
        channels = request.channels if request.channels is not None else self.default_channels
        try:
            if channels is not None:
                self._check_channels(channels, engine)
            start = time.perf_counter()
            if request.raw:
                predictions = engine.forecast(request.past_values)
            else:
                predictions = engine.predict(request.past_values)
            elapsed_ms = (time.perf_counter() - start) * 1e3
        except (InvalidInputError, ModelPackageError) as exc:
            raise ProtocolError(INVALID_INPUT, str(exc), request.request_id) from exc
        if channels is not None:
            predictions = np.ascontiguousarray(predictions[..., channels])
        return {
            "request_id": request.request_id,
            "timestamp_ms": request.timestamp_ms,
            "predictions": predictions,
            "inference_time_ms": round(elapsed_ms, 3),
            "success": True,
        }

    def execute(self, command: Command) -> dict[str, Any]:
        """Run a command (``reload``); ProtocolError if it fails."""
        try:
            engine = self.slot.reload(command.model)
        except OvcastError as exc:
            raise ProtocolError(RELOAD_FAILED, str(exc), command.request_id) from exc
        return {
            "request_id": command.request_id,
            "success": True,
            "event": "reloaded",
            "model": engine.name,
            "model_dir": self.slot.model_dir,
        }

    def _check_channels(self, channels: Sequence[int], engine: Engine | None = None) -> None:
        n = (engine or self.slot.engine).num_channels
        bad = [c for c in channels if not 0 <= c < n]
        if bad:
            raise InvalidInputError(f"channels {bad} out of range; expected indices 0..{n - 1}")


def error_response(error: ProtocolError) -> dict[str, Any]:
    return {
        "request_id": error.request_id,
        "success": False,
        "error": {"code": error.code, "message": str(error)},
    }


def encode(response: dict[str, Any]) -> bytes:
    """One response line, newline included."""
    return orjson.dumps(response, option=_DUMPS_OPTIONS) + b"\n"
