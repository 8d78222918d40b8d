"""Which precision the Engine computes in: f32, or bf16 where it is measured to be harmless.

On CPUs with bf16 units (AVX-512 BF16, AMX) OpenVINO can run the matrix products in bf16,
which is much faster and moves forecasts a little. ``ovcast tune`` (and ``ovcast convert
--check-bf16``) measure how much on the package's own windows, and on a data set when given
one, and record it in the manifest (``runtime_config["precision"]["bf16"]``, see
``bench/precision.py``). By default (``auto``) the Engine then computes in bf16 when

- this CPU has bf16 units (emulated bf16 on other AVX-512 CPUs would be slower), and
- the record says the change is within tolerance: the forecasts' error metrics (MSE and
  MAE) move by at most ``METRIC_TOLERANCE`` relative, and the forecasts themselves by at most
  ``FORECAST_TOLERANCE`` relative RMS; the record is checked (``bf16_evidence``): a real bool,
  finite figures within these tolerances (not the ones written in the file), measured on this
  CPU and OpenVINO release (``records.py``). Anything else: f32, and ``ovcast info`` says why.

Everywhere else, and whenever asked (``Engine(precision_hint="f32")``, ``ovcast --precision
f32 ...`` or ``OVCAST_PRECISION=f32``), it computes in f32, where the parity figures hold.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..package import Manifest
from .cpu import cpu_info
from .records import RecordError, field, finite_number, other_machine

log = logging.getLogger(__name__)

PRECISION_ENV = "OVCAST_PRECISION"
CHOICES = ("auto", "f32", "bf16")
METRIC_TOLERANCE = 1e-3  # relative change of MSE and of MAE, bf16 against f32
FORECAST_TOLERANCE = 1e-2  # relative RMS change of the forecasts, bf16 against f32
# /proc/cpuinfo flags of native bf16 arithmetic: AVX-512 BF16, AMX, AVX-NE-CONVERT (AVX2 hosts)
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "avx_ne_convert")
# ONEDNN_MAX_CPU_ISA values below every ISA with bf16 arithmetic: oneDNN then cannot compile
# a bf16 model (OpenVINO's bf16 Softmax is refused), so the Engine falls back to f32.
ONEDNN_ISA_ENV = "ONEDNN_MAX_CPU_ISA"
NO_BF16_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI")


@dataclass(frozen=True)
class PrecisionChoice:
    """The inference precision an Engine compiles with, and why (shown by info/dashboard)."""

    hint: str  # 'f32' or 'bf16', OpenVINO's INFERENCE_PRECISION_HINT
    reason: str
    evidence: str = ""  # the bf16 record, summarized, where there is one
    asked: bool = False  # by the caller or $OVCAST_PRECISION, not chosen here

    def __str__(self) -> str:
        return f"{self.hint} ({self.reason})"


def native_bf16(flags: Sequence[str] | None = None) -> bool:
    """Does this CPU compute in bf16 natively (not emulated)?"""
    flags = cpu_info()["flags"] if flags is None else flags
    return any(flag in flags for flag in BF16_FLAGS)


@dataclass(frozen=True)
class Bf16Evidence:
    """The bf16 record of a package, checked: usable here, and within ovcast's tolerance?"""

    record: dict[str, Any] | None  # None: not measured
    problem: str = ""  # why it does not count here (malformed, another machine); "" if it does
    within: bool = False  # within ovcast's own tolerance (the record's claim AND its figures)

    def summary(self) -> str:
        return summarize(self.record) if self.record is not None and not self.problem else ""


def bf16_record(manifest: Manifest) -> dict[str, Any] | None:
    """The measured effect of bf16 on this package's forecasts as written, if it was measured
    (unchecked: ``bf16_evidence`` checks it)."""
    config = manifest.runtime_config
    section = config.get("precision") if isinstance(config, dict) else None
    record = section.get("bf16") if isinstance(section, dict) else None
    return record if isinstance(record, dict) else None


def bf16_evidence(manifest: Manifest, here: Mapping[str, str] | None = None) -> Bf16Evidence:
    """The package's bf16 record checked field by field, against this machine and against
    ovcast's tolerances (never the ones written in the file)."""
    config = manifest.runtime_config
    section = config.get("precision") if isinstance(config, dict) else None
    if section is None or (isinstance(section, dict) and "bf16" not in section):
        return Bf16Evidence(None)
    where = "runtime_config.precision"
    try:
        if not isinstance(section, dict):
            raise RecordError(f"{where} must be an object, got {section!r}")
        record = field(section, "bf16", dict, where)
        where += ".bf16"
        claimed = field(record, "within_tolerance", bool, where)
        rms = finite_number(record.get("forecast_rms_change"), f"{where}.forecast_rms_change")
        metric = field(record, "metric", dict, where)
        changes = [
            finite_number(metric.get(key), f"{where}.metric.{key}")
            for key in ("mse_change", "mae_change")
        ]
        if rms < 0:
            raise RecordError(f"{where}.forecast_rms_change must be >= 0, got {rms}")
        field(metric, "windows", str, f"{where}.metric")
        field(record, "at", str, where)
    except RecordError as exc:
        problem = f"the bf16 record is malformed: {exc}"
        log.warning("%s: %s; computing in f32", manifest.name, problem)
        return Bf16Evidence(bf16_record(manifest), problem)
    foreign = other_machine(record.get("measured_on"), f"{where}.measured_on", here)
    if foreign:
        return Bf16Evidence(record, f"the bf16 record does not count here: {foreign}")
    within = (
        claimed
        and rms <= FORECAST_TOLERANCE
        and all(abs(change) <= METRIC_TOLERANCE for change in changes)
    )
    return Bf16Evidence(record, "", within)


def summarize(record: dict[str, Any]) -> str:
    """One line of evidence: how far bf16 moved forecasts and metrics, against ovcast's
    tolerances (a checked record: see ``bf16_evidence``)."""
    metric = record["metric"]
    return (
        f"bf16 moved forecasts {100 * record['forecast_rms_change']:.2f}% RMS (tolerance "
        f"{100 * FORECAST_TOLERANCE:g}%), MSE {100 * metric['mse_change']:+.3f}% "
        f"and MAE {100 * metric['mae_change']:+.3f}% (tolerance "
        f"{100 * METRIC_TOLERANCE:g}%) on {metric['windows']}"
    )


def onednn_caps_bf16() -> str | None:
    """``ONEDNN_MAX_CPU_ISA`` when it caps oneDNN below bf16 (e.g. AVX2); None otherwise."""
    cap = os.environ.get(ONEDNN_ISA_ENV, "").strip().upper()
    return cap if cap in NO_BF16_ISAS else None


def requested_precision(requested: str | None) -> str:
    """The caller's choice, else $OVCAST_PRECISION, else 'auto'; checked."""
    value = requested or os.environ.get(PRECISION_ENV) or "auto"
    if value not in CHOICES:
        where = "precision_hint" if requested else f"${PRECISION_ENV}"
        raise ConfigError(f"{where} must be one of {CHOICES}, got {value!r}")
    return value


def choose_precision(
    manifest: Manifest,
    requested: str | None = None,
    flags: Sequence[str] | None = None,
    here: Mapping[str, str] | None = None,
) -> PrecisionChoice:
    """f32 or bf16 for this package on this CPU (see the module docstring)."""
    wanted = requested_precision(requested)
    if wanted == "f32":
        return PrecisionChoice("f32", "as asked", asked=True)
    capped = onednn_caps_bf16()
    if wanted == "bf16" and requested is not None:  # a program's own choice (bench, tune)
        return PrecisionChoice("bf16", "as asked", asked=True)
    if wanted == "bf16":  # ovcast --precision bf16 or $OVCAST_PRECISION: say what it costs
        evidence = bf16_evidence(manifest, here)
        if capped:
            log.warning("bf16 asked, but %s=%s caps oneDNN below bf16", ONEDNN_ISA_ENV, capped)
        elif evidence.record is None or evidence.problem or not evidence.within:
            why = evidence.problem or (
                "bf16 was not measured for this package"
                if evidence.record is None
                else "the bf16 record says OUTSIDE tolerance"
            )
            log.warning("computing in bf16 as asked, although %s", why)
        return PrecisionChoice("bf16", "as asked", evidence.summary(), asked=True)
    if not native_bf16(flags):
        return PrecisionChoice("f32", "this CPU has no bf16 units")
    if capped:
        return PrecisionChoice("f32", f"{ONEDNN_ISA_ENV}={capped} caps oneDNN below bf16")
    evidence = bf16_evidence(manifest, here)
    if evidence.problem:
        return PrecisionChoice("f32", f"{evidence.problem}; ovcast tune measures it anew")
    if evidence.record is None:
        return PrecisionChoice(
            "f32", "bf16 was not measured for this package (ovcast tune measures it)"
        )
    if not evidence.within:
        return PrecisionChoice(
            "f32", "bf16 was measured outside ovcast's tolerance", evidence.summary()
        )
    return PrecisionChoice(
        "bf16", "bf16 was measured within tolerance; --precision f32 for f32", evidence.summary()
    )


def fallback_to_f32(choice: PrecisionChoice, error: Exception) -> PrecisionChoice:
    """f32 after a chosen bf16 failed to compile (e.g. ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN
    below bf16: no bf16 Softmax); re-raises ``error`` when there is nothing to fall back from."""
    if choice.asked or choice.hint == "f32":
        raise error
    first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    log.warning("bf16 did not compile here (%s); computing in f32", first_line)
    return PrecisionChoice(
        "f32", f"bf16 did not compile here ({first_line[:160]})", choice.evidence
    )


@contextlib.contextmanager
def precision_for_process(choice: str | None) -> Iterator[None]:
    """``$OVCAST_PRECISION`` = ``choice`` within the block (for this process's engines and the
    servers it starts), restored after it; None leaves it as it is."""
    previous = os.environ.get(PRECISION_ENV)
    if choice:
        requested_precision(choice)  # checked
        os.environ[PRECISION_ENV] = choice
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PRECISION_ENV, None)
        else:
            os.environ[PRECISION_ENV] = previous
