"""ovcast info MODEL_DIR: what a model package holds."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="show a model package's manifest",
        description="Show a model package's manifest: shapes, channels, source, parity, scaler, "
        "the export rewrites, the tuned config, and the precision an engine computes in on this "
        "machine with the evidence for it (ovcast tune measures bf16's effect). A bf16 record "
        "or tuned config that does not count here (malformed, measured on another CPU or "
        "OpenVINO release, outside ovcast's tolerances) is shown with the reason.\n\n"
        "example:\n  ovcast info models/default --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--json", action="store_true", help="print the raw manifest as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ModelPackageError
    from ..package import ModelPackage
    from ..runtime.compiled import use_static_batch1
    from ..runtime.precision import bf16_evidence, choose_precision
    from ..runtime.records import tuned_settings

    package = ModelPackage.load(args.model_dir)
    m = package.manifest
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
        return 0
    source = m.source.get("hub_id") or m.source.get("path") or m.source.get("name")
    config = m.runtime_config if isinstance(m.runtime_config, dict) else {}
    tuned = {k: v for k, v in config.items() if k != "precision"}
    try:
        static = "on" if use_static_batch1(None, tuned_settings(m, "latency")) else "off (tune)"
    except ModelPackageError as exc:
        static = f"unusable tuned config: {exc}"
    precision = choose_precision(m)
    if precision.hint == "bf16":
        static = "off (in bf16 single windows go through the batch model: same answers)"
    parity = m.parity.get("fp32_vs_torch", {})
    rows = [
        ("package", str(package.path)),
        ("name", m.name),
        ("architecture", f"{m.architecture} ({m.family})"),
        ("context x channels", f"{m.context_length} x {m.num_input_channels}"),
        ("horizon", str(m.prediction_length)),
        ("channels", ", ".join(m.channel_names)),
        *(
            ("input" if i == 0 else "", f"{t.name} {t.shape} {t.datatype}" + _meaning(t))
            for i, t in enumerate(m.inputs)
        ),
        ("output", f"{m.outputs[0].name} {m.outputs[0].shape} {m.outputs[0].datatype}"),
        ("forecast channels", ", ".join(m.channel_names[i] for i in m.forecast_channels)),
        ("package precision", m.precision),
        ("source", f"{source} (revision {m.source.get('revision') or '-'})"),
        ("weights sha256", m.source.get("weights_sha256", "")),
        (
            "parity fp32",
            f"max abs {parity.get('max_abs_error', float('nan')):.2e}, "
            f"max rel {parity.get('max_rel_error', float('nan')):.2e}",
        ),
        ("export rewrites", ", ".join(m.parity.get("export_rewrites", [])) or "none"),
        ("scaler", _scaler_text(m)),
        ("tuned config", json.dumps(tuned) if tuned else "none"),
        ("static batch 1", static),
        ("bf16 check", _bf16_line(bf16_evidence(m))),
        ("computes in (here)", str(precision)),
        ("versions", ", ".join(f"{k} {v}" for k, v in m.versions.items())),
        ("created", m.created_at),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _meaning(spec: Any) -> str:
    return f": {spec.description}" if spec.description and spec.name != "past_values" else ""


def _scaler_text(m: Any) -> str:
    if m.series_scalers:
        count = len(m.series_scalers["scalers"])
        return f"one per series ({count}), by {', '.join(m.series_scalers['id_columns'])}"
    return ", ".join(ch["kind"] for ch in m.scaler["channels"]) if m.scaler else "none"


def _bf16_line(evidence: Any) -> str:
    if evidence.problem:
        return f"not used: {evidence.problem}"
    if evidence.record is None:
        return "not measured (ovcast tune measures it where the CPU has bf16 units)"
    where = evidence.record["measured_on"]
    verdict = "within tolerance" if evidence.within else "OUTSIDE tolerance"
    return (
        f"{verdict}, {evidence.summary()}; measured {evidence.record['at']} on {where['cpu']} "
        f"({where['cpu_family_model']}), OpenVINO {where['openvino']}"
    )
