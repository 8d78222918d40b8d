"""The machine-specific records in a manifest's ``runtime_config``, checked before use.

``ovcast tune`` writes two kinds of record into ``ovcast.json``: the settings it measured
fastest for a mode (``runtime_config["latency"]``, ``["throughput"]``) and the measured
effect of bf16 on the forecasts (``runtime_config["precision"]["bf16"]``). Both are facts
about one machine and one OpenVINO version, and the file is plain JSON anyone can edit, so
neither is taken on trust:

- a record measured on another CPU (model, family/model, ISA) or another OpenVINO release
  does not count here: it is ignored, with a warning (``ovcast tune`` measures anew); a tuned
  config without a ``measured`` record was written by hand and is applied as written;
- a tuned setting of the wrong type, or a key ovcast does not know, is refused with a
  ``ModelPackageError`` naming the field (a package that asks for something odd must say so);
- a bf16 record whose fields are missing or of the wrong type is ignored (f32), with a
  warning naming the field; its verdict is re-checked against ovcast's own tolerances
  (``precision.py``), never the tolerance written in the file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from ..errors import ModelPackageError
from ..package import Manifest
from .cpu import cpu_info, isa_summary

log = logging.getLogger(__name__)

# What identifies the machine a record was measured on (``measured_on`` of the bf16 record,
# ``measured`` of a tuned config): a record from a machine that differs in any does not count.
MACHINE_FIELDS = ("cpu", "cpu_family_model", "isa", "openvino")

# The settings ``ovcast tune`` stores for a mode, and the type each must have.
TUNED_SETTINGS: dict[str, type] = {
    "INFERENCE_NUM_THREADS": int,
    "NUM_STREAMS": int,
    "ENABLE_CPU_PINNING": bool,
    "PERFORMANCE_HINT": str,
    "INFERENCE_PRECISION_HINT": str,
    "static_batch1": bool,
    "batch_size": int,  # throughput: predict_many's batch
    "measured": dict,
}


class RecordError(ValueError):
    """A record's field is missing or has the wrong type; the message names the field."""


def this_machine() -> dict[str, str]:
    """The identity records are measured on: CPU model, family/model, ISA, OpenVINO release."""
    import openvino as ov

    cpu = cpu_info()
    return {
        "cpu": str(cpu["model"]),
        "cpu_family_model": f"{cpu.get('family', '?')}/{cpu.get('model_number', '?')}",
        "isa": isa_summary(cpu["flags"]),
        "openvino": _release(ov.get_version()),
    }


def other_machine(
    measured_on: Any, where: str, here: Mapping[str, str] | None = None
) -> str | None:
    """Why a record measured on ``measured_on`` does not count here; None when it does."""
    if not isinstance(measured_on, Mapping):
        return f"{where} is not an object"
    here = this_machine() if here is None else here
    for key in MACHINE_FIELDS:
        value = measured_on.get(key)
        if not isinstance(value, str):
            return f"{where}.{key} is missing"
        theirs, ours = (_release(value), here[key]) if key == "openvino" else (value, here[key])
        if theirs != ours:
            return f"measured with {key} {theirs!r}, this machine has {ours!r}"
    return None


def finite_number(value: Any, where: str) -> float:
    """``value`` as a float when it is a real, finite number (not a bool); else RecordError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def field(record: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """``record[key]`` when it is there with type ``kind`` (a bool is not an int); else
    RecordError naming ``where.key``."""
    if key not in record:
        raise RecordError(f"{where}.{key} is missing")
    value = record[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise RecordError(f"{where}.{key} must be {kind.__name__}, got {value!r}")
    return value


def section(manifest: Manifest, key: str) -> dict[str, Any] | None:
    """``runtime_config[key]`` when present; ModelPackageError when it (or runtime_config)
    is not an object."""
    config = manifest.runtime_config
    if not isinstance(config, dict):
        raise ModelPackageError(f"runtime_config in ovcast.json must be an object, got {config!r}")
    value = config.get(key)
    if value is not None and not isinstance(value, dict):
        raise ModelPackageError(
            f"runtime_config.{key} in ovcast.json must be an object, got {value!r}"
        )
    return value


def tuned_settings(
    manifest: Manifest, mode: str, here: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The settings ``ovcast tune`` measured for ``mode`` on this machine ({} when none, or
    when measured elsewhere: ignored with a warning); ModelPackageError for a malformed one."""
    where = f"runtime_config.{mode}"
    tuned = section(manifest, mode)
    if not tuned:
        return {}
    try:
        for key, value in tuned.items():
            if key not in TUNED_SETTINGS:
                raise RecordError(
                    f"{where}.{key} is not a setting ovcast knows (known: {sorted(TUNED_SETTINGS)})"
                )
            field(tuned, key, TUNED_SETTINGS[key], where)
            if key in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "batch_size") and value < 1:
                raise RecordError(f"{where}.{key} must be at least 1, got {value}")
    except RecordError as exc:
        raise ModelPackageError(f"{exc} in ovcast.json; run `ovcast tune` again") from None
    measured = tuned.get("measured")
    if measured is None:  # written by hand, not measured: the package's author asks for it
        foreign = None
    elif "cpu_family_model" not in measured:  # measured before ovcast kept the whole identity
        cpu = (here or this_machine())["cpu"]
        foreign = None if measured.get("cpu") == cpu else f"measured on {measured.get('cpu')!r}"
    else:
        foreign = other_machine(measured, f"{where}.measured", here)
    if foreign:
        log.warning(
            "ignoring the tuned %s config of %s: %s (ovcast tune measures this machine)",
            mode,
            manifest.name,
            foreign,
        )
        return {}
    return {k: v for k, v in tuned.items() if k != "measured"}


def _release(version: str) -> str:
    """'2026.4.1-20901-abc' -> '2026.4.1': builds of one release compute alike."""
    return version.split("-")[0]
