"""The KServe v2 wire format: infer bodies to core requests, results to bodies. No transport.

JSON tensors, and the binary tensor extension of Triton and OVMS: the body is a JSON header
of ``Inference-Header-Content-Length`` bytes followed by raw little-endian tensors, each input
naming its ``binary_data_size``. ovcast's own request parameters (all optional):
``{"parameters": {"channels": [0], "raw": true, "binary_data_output": true}}``, and
``"series_id"`` for raw requests to packages with one scaler per series. Models with more
inputs than the window (TinyTimeMixer) take them as further named tensors; the model
metadata lists them (``inputs``) and says what each means (``parameters``).

Every field is checked and every problem listed in one 400 answer naming what was expected;
numbers are converted by ``tensors`` (as for JSON lines) and checked against the model by the
core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .._version import __version__
from ..errors import InvalidRequestError
from ..package import Manifest
from . import tensors
from .core import InferRequest, InferResult, ServedModel, optional_inputs

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data", "model_repository"]


@dataclass
class OutputChoice:
    """Which outputs the client asked for, and which of them as binary."""

    names: list[str]
    binary: dict[str, bool]


def server_metadata() -> dict[str, Any]:
    return {"name": "ovcast", "version": __version__, "extensions": EXTENSIONS}


def model_metadata(served: ServedModel, versions: list[str]) -> dict[str, Any]:
    m = served.manifest
    return {
        "name": served.name,
        "versions": versions,
        "platform": "openvino_ir",
        "inputs": [_spec(t) for t in m.inputs],
        "outputs": [_spec(t) for t in m.outputs],
        "parameters": {
            "channel_names": m.channel_names,
            "architecture": m.architecture,
            "raw_supported": m.scaler is not None or m.series_scalers is not None,
            **_more_inputs(m),
        },
    }


def _more_inputs(m: Manifest) -> dict[str, Any]:
    """For packages that take more than the window (TinyTimeMixer) or forecast a subset of
    channels: what each input means, which may be left out, whose scaler a raw request uses."""
    extra: dict[str, Any] = {}
    if m.extra_inputs:
        extra["input_descriptions"] = {t.name: t.description for t in m.inputs}
        extra["optional_inputs"] = sorted(optional_inputs(m) & {t.name for t in m.inputs})
    if m.output_channels is not None:
        extra["forecast_channel_names"] = [m.channel_names[i] for i in m.forecast_channels]
    if m.frequency:
        extra["frequency"] = m.frequency
    if m.series_scalers:
        extra["series_id_columns"] = m.series_scalers["id_columns"]
    return extra


def _spec(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}


def decode_infer(
    manifest: Manifest,
    body: bytes,
    header_length: str | None,
    *,
    name: str,
    version: str | None,
) -> tuple[InferRequest, OutputChoice]:
    """A KServe v2 infer body (JSON, or JSON header + binary tensors) as a core request."""
    problems: list[tensors.Problem] = []

    def problem(message: str, code: str = "invalid_request") -> None:
        problems.append((code, message))

    header_bytes, binary = _split(body, header_length)
    header = tensors.json_object(
        header_bytes,
        what="the request body",
        expected='a JSON object {"inputs": [{"name", "shape", "datatype", "data"}]}',
    )
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        problem(f"'id' must be a string, got {type(request_id).__name__}")
        request_id = None
    parameters = _object(header.get("parameters"), "parameters", problem)
    channels, raw = tensors.request_options(parameters, "parameters.", problems)
    series_id = tensors.series_id_option(parameters, "parameters.", problems)
    binary_default = _flag(parameters, "binary_data_output", "parameters", problem)
    specs = {t.name: t for t in manifest.inputs}
    inputs: dict[str, np.ndarray | None] = {}
    offset = 0
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        problem(
            f"'inputs' must be a non-empty list of {{name, shape, datatype, data}}; "
            f"{manifest.name} takes {list(specs)}"
        )
        raw_inputs = []
    for k, tensor in enumerate(raw_inputs):
        where = f"inputs[{k}]"
        if not isinstance(tensor, dict):
            problem(f"{where} must be an object {{name, shape, datatype, data}}")
            continue
        tensor_name = tensor.get("name")
        if not isinstance(tensor_name, str):
            problem(f"{where}.name must be a string; expected one of {list(specs)}")
            continue
        if tensor_name in inputs:
            problem(f"input {tensor_name!r} is given twice")
            continue
        where = f"input {tensor_name[:64]!r}"
        inputs[tensor_name] = None
        spec = specs.get(tensor_name)
        expected_type = spec.datatype if spec else "FP32"
        shape = tensor.get("shape")
        if not (
            isinstance(shape, list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            problem(f"{where}: 'shape' must be a list of non-negative integers, got {shape!r:.80}")
            shape = None
        datatype = tensor.get("datatype")
        if datatype != expected_type:
            problem(f"{where}: datatype {datatype!r:.40}; expected {expected_type!r}")
        tensor_parameters = _object(tensor.get("parameters"), f"{where}.parameters", problem)
        size = tensor_parameters.get("binary_data_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            problem(f"{where}: parameters.binary_data_size must be a non-negative integer")
            continue
        if shape is None or datatype != expected_type:
            offset += size or 0
            continue
        try:
            if size is not None:
                if header_length is None:
                    raise InvalidRequestError(
                        f"{where}: binary_data_size needs the {HEADER_LENGTH} header"
                    )
                chunk = binary[offset : offset + size]
                offset += size
                if len(chunk) < size:
                    raise InvalidRequestError(
                        f"{where}: binary_data_size {size} runs past the end of the body"
                    )
                array = tensors.from_binary(chunk, name=tensor_name, datatype=datatype, shape=shape)
            else:
                array = _from_json_data(tensor, tensor_name, datatype, shape, header_bytes)
            inputs[tensor_name] = array
        except InvalidRequestError as exc:
            problem(str(exc), exc.code)
    if header_length is not None and offset != len(binary) and not problems:
        problem(
            f"the body holds {len(binary)} bytes after the JSON header; the inputs' "
            f"binary_data_size add up to {offset}"
        )
    outputs = _outputs(header.get("outputs"), manifest, binary_default, problem)
    request = InferRequest(
        inputs,
        model=name,
        version=version,
        channels=channels,
        raw=raw,
        series_id=series_id,
        request_id=request_id,
        problems=problems,
    )
    return request, outputs


def _split(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    if header_length is None:
        return body, memoryview(b"")
    digits = header_length.isascii() and header_length.isdigit()  # not '²', which int() refuses
    if not digits or not 0 < int(header_length) <= len(body):
        raise InvalidRequestError(
            f"{HEADER_LENGTH} {header_length[:20]!r} must be an integer from 1 to the body "
            f"length ({len(body)})"
        )
    length = int(header_length)
    return body[:length], memoryview(body)[length:]


def _from_json_data(
    tensor: dict[str, Any], name: str, datatype: str, shape: list[int], source: bytes
) -> np.ndarray:
    data = tensor.get("data")
    if data is None:
        raise InvalidRequestError(
            f"input {name!r} has neither 'data' nor parameters.binary_data_size"
        )
    array = tensors.from_json(data, name=name, datatype=datatype, source=source)
    count = math.prod(shape)  # Python integers: [2**32, 2**32] must not wrap to 0
    if array.size != count:
        raise InvalidRequestError(
            f"input {name!r} 'data' holds {array.size} values; shape {shape} needs {count}",
            code="invalid_input",
        )
    return array.reshape(shape)


def _outputs(requested: Any, manifest: Manifest, binary_default: bool, problem) -> OutputChoice:
    known = [t.name for t in manifest.outputs]
    if requested is None:
        return OutputChoice(known, {n: binary_default for n in known})
    if not isinstance(requested, list):
        problem(f"'outputs' must be a list of {{name, parameters}}; outputs are {known}")
        return OutputChoice(known, {n: binary_default for n in known})
    names: list[str] = []
    binary: dict[str, bool] = {}
    for k, entry in enumerate(requested):
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in known:
            problem(f"outputs[{k}] must be an object naming one of {known}, got {entry!r:.80}")
            continue
        if name in binary:
            problem(f"outputs[{k}] asks for {name!r} again; name each output at most once")
            break  # one problem for a list of many copies
        parameters = _object(entry.get("parameters"), f"outputs[{k}].parameters", problem)
        flag = _flag(parameters, "binary_data", f"outputs[{k}].parameters", problem)
        names.append(name)
        binary[name] = flag if "binary_data" in parameters else binary_default
    return OutputChoice(names or known, binary or {n: binary_default for n in known})


def _object(value: Any, where: str, problem) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problem(f"'{where}' must be an object, got {type(value).__name__}")
        return {}
    return value


def _flag(parameters: dict[str, Any], key: str, where: str, problem) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        problem(f"{where}.{key} must be true or false")
        return False
    return value


def encode_infer(result: InferResult, choice: OutputChoice) -> tuple[bytes, dict[str, str]]:
    """Response body and content headers: JSON, or JSON header + binary outputs."""
    response: dict[str, Any] = {
        "model_name": result.model,
        "model_version": result.version,
        "outputs": [],
    }
    if result.request_id is not None:
        response["id"] = result.request_id
    blobs = []
    for name in choice.names:
        array = result.outputs[name]
        output: dict[str, Any] = {
            "name": name,
            "datatype": "FP32" if array.dtype.kind == "f" else "INT64",
            "shape": list(array.shape),
        }
        if choice.binary.get(name):
            raw = np.ascontiguousarray(array, dtype="<f4" if array.dtype.kind == "f" else "<i8")
            blobs.append(raw.tobytes())
            output["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            output["data"] = array.reshape(-1)
        response["outputs"].append(output)
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, {"content-type": "application/json"}
    return b"".join([header, *blobs]), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH.lower(): str(len(header)),
    }
