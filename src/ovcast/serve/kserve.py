"""KServe v2 inference protocol: decode infer requests, encode responses (no transport).

Supports the JSON tensor form and the binary tensor extension (Triton/OVMS): the body is a
JSON header of ``Inference-Header-Content-Length`` bytes followed by raw little-endian
tensors, each input naming its ``binary_data_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..runtime.engine import Engine

HEADER_LENGTH = "Inference-Header-Content-Length"


class BadRequest(Exception):
    """The request does not follow the protocol (HTTP 400)."""


@dataclass
class InferRequest:
    request_id: str | None
    windows: np.ndarray  # (batch, context, channels) float32
    binary_output: bool
    output_name: str


def model_metadata(engine: Engine) -> dict[str, Any]:
    m = engine.package.manifest
    return {
        "name": m.name,
        "versions": ["1"],
        "platform": "openvino_ir",
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in m.inputs],
        "outputs": [{"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in m.outputs],
        "parameters": {"channel_names": m.channel_names, "architecture": m.architecture},
    }


def decode_infer(engine: Engine, body: bytes, header_length: int | None) -> InferRequest:
    m = engine.package.manifest
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise BadRequest(
                f"{HEADER_LENGTH} {header_length} does not fit a body of {len(body)} bytes"
            )
        header_bytes, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        header_bytes, binary = body, memoryview(b"")
    try:
        header = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest('expected {"inputs": [{"name", "shape", "datatype", "data"}]}')
    expected_input = m.inputs[0]
    inputs = header["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadRequest(f"expected exactly one input named {expected_input.name!r}")
    tensor = inputs[0]
    if tensor.get("name") != expected_input.name:
        raise BadRequest(f"unknown input {tensor.get('name')!r}; expected {expected_input.name!r}")
    if tensor.get("datatype") != "FP32":
        raise BadRequest(f"input datatype {tensor.get('datatype')!r}; expected 'FP32'")
    shape = tensor.get("shape")
    context, channels = m.context_length, m.num_input_channels
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(d, int) for d in shape)
        and shape[0] > 0
        and shape[1:] == [context, channels]
    ):
        raise BadRequest(f"input shape {shape}; expected [batch, {context}, {channels}]")
    count = shape[0] * context * channels
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if size != count * 4 or len(binary) < size:
            raise BadRequest(
                f"binary_data_size {size} with {len(binary)} bytes sent; expected "
                f"{count * 4} bytes of little-endian FP32 for shape {shape}"
            )
        array = np.frombuffer(binary[:size], dtype="<f4").reshape(shape)
    else:
        data = tensor.get("data")
        if not isinstance(data, list):
            raise BadRequest("input has neither 'data' nor parameters.binary_data_size")
        try:
            array = np.asarray(data, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"input data must be numbers, flat or nested: {exc}") from exc
        if array.size != count:
            raise BadRequest(f"input data holds {array.size} values; shape {shape} needs {count}")
        array = array.reshape(shape)
    if not np.isfinite(array).all():
        raise BadRequest("input data contains NaN or inf")
    output_name = m.outputs[0].name
    binary_output = bool((header.get("parameters") or {}).get("binary_data_output", False))
    for requested in header.get("outputs") or []:
        if requested.get("name") != output_name:
            raise BadRequest(f"unknown output {requested.get('name')!r}; expected {output_name!r}")
        binary_output = bool((requested.get("parameters") or {}).get("binary_data", binary_output))
    request_id = header.get("id")
    return InferRequest(
        None if request_id is None else str(request_id),
        np.ascontiguousarray(array),
        binary_output,
        output_name,
    )


def encode_infer(
    engine: Engine, request: InferRequest, result: np.ndarray
) -> tuple[bytes, dict[str, str]]:
    """Response body and extra headers."""
    output: dict[str, Any] = {
        "name": request.output_name,
        "datatype": "FP32",
        "shape": list(result.shape),
    }
    response: dict[str, Any] = {
        "model_name": engine.name,
        "model_version": "1",
        "outputs": [output],
    }
    if request.request_id is not None:
        response["id"] = request.request_id
    if not request.binary_output:
        output["data"] = result.reshape(-1)
        return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), {
            "Content-Type": "application/json"
        }
    raw = np.ascontiguousarray(result, dtype="<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps(response)
    return header + raw, {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
