"""Numbers off the wire: JSON values and binary buffers to numpy arrays, strictly.

Both front ends convert tensor data here, so they accept and refuse exactly the same
inputs: numbers only (JSON strings, booleans and nulls are refused, not coerced), nested
lists that are not ragged, the KServe datatypes the model declares. Every function returns
an array or raises ``InvalidRequestError`` naming what was expected; none checks shapes
against a model (the core does, once).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from ..errors import InvalidRequestError

# KServe v2 datatypes ovcast can carry, as little-endian numpy dtypes (binary extension).
DTYPES: dict[str, np.dtype] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
}
_BOOL_LITERALS = (b"true", b"false")
Problem = tuple[str, str]  # (error code, message)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def json_object(data: bytes | bytearray, *, what: str, expected: str) -> dict[str, Any]:
    """``data`` parsed as a JSON object, or InvalidRequestError naming what was expected."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"{what} is not valid JSON (or not UTF-8): {exc}", code="invalid_json"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{what}: expected {expected}, got {type(value).__name__}")
    return value


def request_options(
    fields: dict[str, Any], where: str, problems: list[Problem]
) -> tuple[list[int] | None, bool | None]:
    """The options both wire formats carry, checked alike: ``channels`` and ``raw``."""
    channels = fields.get("channels")
    if channels is not None and not (
        isinstance(channels, list)
        and channels
        and all(isinstance(c, int) and not isinstance(c, bool) for c in channels)
    ):
        problems.append(
            ("invalid_request", f"'{where}channels' must be a non-empty list of channel indices")
        )
        channels = None
    raw = fields.get("raw")
    if raw is not None and not isinstance(raw, bool):
        problems.append(("invalid_request", f"'{where}raw' must be true or false"))
        raw = None
    return channels, raw


def series_id_option(fields: dict[str, Any], where: str, problems: list[Problem]) -> Any:
    """``series_id``: whose scaler a raw request uses, for packages with one per series
    (a string or number, a list of the parts of one id, an object by id column; for a batch,
    a list of one per window). The engine checks it against the package's ids."""
    series_id = fields.get("series_id")
    if series_id is None or isinstance(series_id, (str, list, dict)):
        return series_id
    if isinstance(series_id, (int, float)) and not isinstance(series_id, bool):
        return series_id
    problems.append(
        ("invalid_request", f"'{where}series_id' must be a string, number, list or object")
    )
    return None


def from_json(
    value: Any, *, name: str, datatype: str = "FP32", source: bytes | bytearray | None = None
) -> np.ndarray:
    """A JSON number or (nested) list of numbers as an array of ``datatype``.

    ``source`` is the raw text the value was parsed from, if known: booleans mixed with
    numbers would otherwise pass numpy's conversion as 1 and 0, and looking for the
    literals in the text is cheaper than visiting every number in Python.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return cast(np.asarray(value), name=name, datatype=datatype)  # one number: a 0-d tensor
    if not isinstance(value, list):
        raise InvalidRequestError(
            f"'{name}' must be a number or a (nested) list of numbers, got {type(value).__name__}"
        )
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise InvalidRequestError(
            f"'{name}' is ragged; expected nested lists of equal length", code="invalid_input"
        ) from None
    numeric = array.dtype.kind in "iuf"
    if not numeric or _has_bool(value, array, source):
        if array.dtype.kind == "b" or numeric:
            what = "booleans"
        elif array.dtype.kind == "U":
            what = "strings"
        else:
            what = "nulls, objects, ragged lists or integers beyond 64 bits"
        raise InvalidRequestError(
            f"'{name}' holds {what}; expected numbers only", code="invalid_input"
        )
    return cast(array, name=name, datatype=datatype)


def from_binary(
    buffer: memoryview | bytes, *, name: str, datatype: str, shape: Sequence[int]
) -> np.ndarray:
    """Raw little-endian tensor bytes (the binary tensor extension) as an array."""
    dtype = _dtype(datatype, name)
    count = math.prod(shape)  # Python integers: never wraps
    if len(buffer) != count * dtype.itemsize:
        raise InvalidRequestError(
            f"'{name}' has {len(buffer)} bytes of binary data; shape {list(shape)} of "
            f"{datatype} needs {count * dtype.itemsize}"
        )
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def from_base64(value: dict[str, Any], *, name: str) -> np.ndarray:
    """``{"base64": ..., "shape": [...], "datatype": "FP32"}``: the binary extension's bytes
    (little-endian, row-major) in a JSON text, as an array straight from the decoded buffer
    (no Python number per value). ``datatype`` defaults to FP32."""
    text, shape = value.get("base64"), value.get("shape")
    datatype = value.get("datatype", "FP32")
    unknown = sorted(set(value) - {"base64", "shape", "datatype"})
    if unknown or not isinstance(text, str) or not isinstance(datatype, str):
        raise InvalidRequestError(
            f'\'{name}\' as an object must be {{"base64": "...", "shape": [...], '
            f'"datatype": "FP32"}} (little-endian, row-major)'
            + (f"; unknown field(s) {unknown}" if unknown else "")
        )
    if not (
        isinstance(shape, list)
        and shape
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidRequestError(
            f"'{name}.shape' must be a list of dimensions such as [512, 7]", code="invalid_input"
        )
    try:
        buffer = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(
            f"'{name}.base64' is not valid base64 ({exc})", code="invalid_input"
        ) from None
    return from_binary(buffer, name=name, datatype=datatype, shape=shape)


def to_base64(array: np.ndarray) -> dict[str, Any]:
    """The response form of ``from_base64``: FP32, little-endian, row-major."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return {
        "base64": base64.b64encode(data.tobytes()).decode("ascii"),
        "shape": list(data.shape),
        "datatype": "FP32",
    }


def cast(array: np.ndarray, *, name: str, datatype: str) -> np.ndarray:
    """``array`` as ``datatype`` (no copy when it already is); integers must be whole."""
    dtype = _dtype(datatype, name)
    if dtype.kind == "i" and array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise InvalidRequestError(
                f"'{name}' is {datatype}: expected whole numbers", code="invalid_input"
            )
    with np.errstate(over="ignore"):
        converted = array.astype(dtype.newbyteorder("="), copy=False)
    if converted is not array and dtype.kind == "f" and array.dtype.kind == "f":
        beyond = beyond_float32(array, converted)  # 1e300 became inf: say what it really was
        if beyond:
            raise InvalidRequestError(f"'{name}' {beyond}", code="invalid_input")
    return converted


def beyond_float32(array: np.ndarray, as_float32: np.ndarray) -> str | None:
    """Where a finite value of a wider float array became inf in float32 (beyond its range:
    not a NaN or inf the client sent); None if nowhere."""
    big = np.isinf(as_float32) & np.isfinite(array)
    if not big.any():
        return None
    where = np.argwhere(big)[0].tolist()
    return (
        f"has {float(array[tuple(where)]):g} (first at index {where}), beyond float32's range "
        f"(±{FLOAT32_MAX:.4g}); expected finite float32 numbers"
    )


def _dtype(datatype: str, name: str) -> np.dtype:
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise InvalidRequestError(
            f"'{name}' has datatype {datatype!r}; expected one of {sorted(DTYPES)}"
        )
    return dtype


def _has_bool(value: list, array: np.ndarray, source: bytes | bytearray | None) -> bool:
    """Whether JSON booleans hide among the numbers (numpy made them 1 and 0).

    Cheap first: only an array holding exact 0s or 1s can hide one, and only a text that
    spells true or false; then the exact (slow) look at every value.
    """
    if array.dtype.kind not in "iuf" or not ((array == 0) | (array == 1)).any():
        return array.dtype.kind == "b"
    if source is not None and not any(b in source for b in _BOOL_LITERALS):
        return False
    return _contains_bool(value)


def _contains_bool(value: Any) -> bool:
    if isinstance(value, list):
        return any(_contains_bool(v) for v in value)
    return isinstance(value, bool)
