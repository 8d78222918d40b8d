"""``ovcast tune``: measure the CPU settings on this machine and store the best in the package.

    ovcast tune models/default --objective latency
    ovcast tune models/default --data ETTh1.csv --splits etth1   # bf16 judged on real data too

Latency: threads x pinning, the static batch-1 model against the dynamic one, and bf16 where
the CPU has bf16 units. Throughput: streams x batch through the async queue. Candidates run
in alternation so drift hits all alike. The winner goes into the manifest's
``runtime_config[objective]``; ``Engine`` applies it by default. Where the CPU has bf16
units, the forecast and metric change of bf16 is measured first (``precision.py``) and
recorded: the Engine then computes in bf16 by default when it is within tolerance. The
guide's environment variables are measured one by one in fresh processes against a baseline.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..package import ModelPackage
from ..parity import parity_windows
from ..runtime.cpu import usable_cores
from ..runtime.engine import Engine
from ..runtime.precision import native_bf16, summarize
from ..runtime.records import this_machine
from .precision import PrecisionData, check_bf16, record_bf16
from .timing import alternate

log = logging.getLogger(__name__)

# A setting must beat the default by more than this (p50) to be stored: on a shared box a
# few percent is noise (the same run picked pinning at 2.36 vs 2.50 ms, and flipped the
# static model's verdict between runs at a 3% margin).
NOISE_MARGIN = 0.05

GUIDE_ENV = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "2",
    "OMP_WAIT_POLICY": "ACTIVE",
    "KMP_AFFINITY": "granularity=fine,compact,1,0",
    "KMP_BLOCKTIME": "1",
    "GOMP_CPU_AFFINITY": "0-1",
}


@dataclass
class TuneReport:
    objective: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    environment: list[dict[str, Any]] = field(default_factory=list)
    bf16: dict[str, Any] | None = None  # precision.check_bf16's record, where measured
    static_batch1: bool | None = None  # the static batch-1 model beat the dynamic one

    def table(self) -> str:
        unit = "p50 ms" if self.objective == "latency" else "forecasts/s"
        lines = [f"{self.objective}: candidates ({unit})"]
        for c in self.candidates:
            mark = " <- best" if c["config"] == self.best.get("config") else ""
            note = f"  ({c['note']})" if c.get("note") else ""
            lines.append(f"  {json.dumps(c['config']):<80} {c['score']:9.2f}{mark}{note}")
        if self.static_batch1 is not None:
            lines.append(
                "static batch-1 model: "
                + (
                    "kept (the dynamic one was not clearly faster)"
                    if self.static_batch1
                    else "off (the dynamic model was faster at the best settings)"
                )
            )
        if self.bf16 is not None:
            verdict = "within" if self.bf16["within_tolerance"] else "OUTSIDE"
            lines.append(f"bf16 accuracy: {summarize(self.bf16)}: {verdict} tolerance")
        if self.environment:
            lines.append(
                "guide environment variables, each alone vs none (p50 ms, fresh processes):"
            )
            for e in self.environment:
                lines.append(
                    f"  {e['variable']:<44} {e['p50_ms']:7.2f} vs {e['baseline_p50_ms']:7.2f}  "
                    f"{e['change_percent']:+6.1f}%  {e['verdict']}"
                )
        return "\n".join(lines)


def tune(
    model_dir: str | Path,
    *,
    objective: str = "latency",
    duration_s: float = 3.0,
    measure_env: bool = True,
    save: bool = True,
    data: PrecisionData | None = None,
    check_precision: bool = True,
) -> TuneReport:
    """Measure, and (``save``) store the best config and the bf16 record in the package.

    ``data``: a data set to judge bf16's metric change on (else the package's own windows);
    ``check_precision``: measure bf16 at all (only where the CPU has bf16 units).
    """
    if objective not in ("latency", "throughput"):
        raise ConfigError(f"objective must be latency or throughput, got {objective!r}")
    package = ModelPackage.load(model_dir)
    report = TuneReport(objective)
    if check_precision and native_bf16():
        report.bf16 = check_bf16(package, data)
        record_bf16(package, report.bf16)  # in memory: the candidates below see it
    elif data is not None:
        log.warning("this CPU has no bf16 units: --data is not used (bf16 is not measured)")
    if objective == "latency":
        _tune_latency(package, report, duration_s)
    else:
        _tune_throughput(package, report, duration_s)
    if measure_env:
        report.environment = measure_environment(package.path)
    if save:
        package.manifest.runtime_config[objective] = {
            **report.best["config"],
            **({"static_batch1": report.static_batch1} if report.static_batch1 is not None else {}),
            "measured": {
                "score": report.best["score"],
                **this_machine(),  # a config measured elsewhere is ignored (runtime/records.py)
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }
        package.save_manifest()
    return report


def _tune_latency(package: ModelPackage, report: TuneReport, duration_s: float) -> None:
    """Two alternations: threads x pinning (and the other settings) on the static batch-1
    model; then, at the best of those, the static model against the dynamic one."""
    m = package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)
    cores = usable_cores()
    engines: dict[str, tuple[dict, Engine, str]] = {}

    def add(config: dict[str, Any], engine: Engine, note: str = "") -> None:
        engines[json.dumps(config)] = (config, engine, note)

    for threads, pinning in itertools.product(range(1, cores + 1), (True, False)):
        config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "ENABLE_CPU_PINNING": pinning,
        }
        add(config, Engine(package, threads=threads, pinning=pinning, precision_hint="f32"))
    if report.bf16 is not None:  # the CPU has bf16 units: measured for accuracy above
        verdict = (
            "within tolerance: the Engine's default"
            if report.bf16["within_tolerance"]
            else "outside tolerance: not used"
        )
        add(
            {"INFERENCE_NUM_THREADS": cores, "INFERENCE_PRECISION_HINT": "bf16"},
            Engine(package, threads=cores, precision_hint="bf16"),
            f"bf16, {verdict}",
        )
    if cores > 1:  # the guide's hint choice, measured: THROUGHPUT splits the cores into streams
        config = {
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": cores,
            "INFERENCE_NUM_THREADS": cores,
        }
        add(
            config, Engine(package, mode="throughput", precision_hint="f32"), "a throughput setting"
        )
    with tempfile.TemporaryDirectory() as tmp:  # the guide's --fp16: f16 weights, same model
        fp16 = _fp16_copy(package, Path(tmp))
        add(
            {"INFERENCE_NUM_THREADS": cores, "weights": "fp16 (compress_to_fp16)"},
            Engine(fp16, threads=cores, precision_hint="f32"),
            "weights only; convert --precision fp16",
        )
    stats = alternate(
        {k: partial(e.predict, window) for k, (_, e, _) in engines.items()}, duration_s=duration_s
    )
    for key, (config, _, note) in engines.items():
        report.candidates.append({"config": config, "score": stats[key].p50, "note": note})
    eligible = [c for c in report.candidates if not c["note"]]
    fastest = min(eligible, key=lambda c: c["score"])
    default = next(c for c in eligible if c["config"] == _default_latency(cores))
    clearly = fastest["score"] < (1 - NOISE_MARGIN) * default["score"]
    report.best = fastest if clearly else default  # a noisy tie keeps the default
    report.static_batch1 = _static_beats_dynamic(package, report.best["config"], duration_s)


def _default_latency(cores: int) -> dict[str, Any]:
    """The candidate that is the Engine's own latency default (``cpu.cpu_config``)."""
    return {"INFERENCE_NUM_THREADS": cores, "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}


def _static_beats_dynamic(package: ModelPackage, best: dict[str, Any], duration_s: float) -> bool:
    """Keep the static batch-1 model unless the dynamic one is clearly faster (by more than
    NOISE_MARGIN at p50) with the best settings: a noisy tie keeps the default."""
    m = package.manifest
    window = parity_windows(m.context_length, m.num_input_channels, 1)
    settings = {"threads": best["INFERENCE_NUM_THREADS"], "pinning": best["ENABLE_CPU_PINNING"]}
    runners = {
        kind: partial(
            Engine(
                package, precision_hint="f32", static_batch1=kind == "static", **settings
            ).predict,
            window,
        )
        for kind in ("static", "dynamic")
    }
    stats = alternate(runners, duration_s=duration_s / 2)
    return not stats["dynamic"].p50 < (1 - NOISE_MARGIN) * stats["static"].p50


def _fp16_copy(package: ModelPackage, folder: Path) -> ModelPackage:
    """The same package with f16-compressed weights, as ``--fp16`` / ``--precision fp16`` gives."""
    import shutil

    import openvino as ov

    model = ov.Core().read_model(package.xml_path)
    ov.save_model(model, folder / "model.xml", compress_to_fp16=True)
    shutil.copy2(package.path / "ovcast.json", folder / "ovcast.json")
    return ModelPackage.load(folder)


def _tune_throughput(package: ModelPackage, report: TuneReport, duration_s: float) -> None:
    m = package.manifest
    windows = parity_windows(m.context_length, m.num_input_channels, 32)
    cores = usable_cores()
    runs: dict[str, tuple[dict, Any]] = {}
    for streams in range(1, cores + 1):
        for batch in (1, 8):
            engine = Engine(package, mode="throughput", streams=streams, threads=cores)
            config = {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": cores, "batch_size": batch}
            runs[json.dumps(config)] = (
                config,
                partial(engine.predict_many, windows, batch_size=batch),
            )
    stats = alternate(
        {k: fn for k, (_, fn) in runs.items()}, duration_s=duration_s, batch=len(windows)
    )
    for key, (config, _) in runs.items():
        report.candidates.append({"config": config, "score": stats[key].forecasts_per_s})
    report.best = max(report.candidates, key=lambda c: c["score"])


PROBE = """
import sys, time, numpy as np
from ovcast import Engine
from ovcast.parity import parity_windows
e = Engine(sys.argv[1])
w = parity_windows(e.context_length, e.num_channels, 1)
t = []
end = time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < end:
    s = time.perf_counter(); e.predict(w); t.append(time.perf_counter() - s)
print(np.median(t) * 1e3)
"""


def measure_environment(
    model_dir: Path, seconds: float = 1.5, rounds: int = 2
) -> list[dict[str, Any]]:
    """p50 latency with each guide variable set alone, against none, in fresh processes."""
    clean = {k: v for k, v in os.environ.items() if k not in GUIDE_ENV}

    def probe(extra: dict[str, str]) -> float:
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(model_dir), str(seconds)],
            env={**clean, **extra},
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout.strip())

    results = []
    for name, value in GUIDE_ENV.items():
        base, with_var = [], []
        for _ in range(rounds):  # alternate so drift hits both
            base.append(probe({}))
            with_var.append(probe({name: value}))
        b, v = float(np.median(base)), float(np.median(with_var))
        change = 100 * (v - b) / b
        verdict = (
            "no effect (within 5% noise)"
            if abs(change) < 5
            else ("slower" if change > 0 else "faster")
        )
        results.append(
            {
                "variable": f"{name}={value}",
                "p50_ms": v,
                "baseline_p50_ms": b,
                "change_percent": change,
                "verdict": verdict,
            }
        )
    return results
