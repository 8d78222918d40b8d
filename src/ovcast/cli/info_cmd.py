"""ovcast info MODEL_DIR: what a model package holds."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info",
        help="show a model package's manifest",
        description="Show a model package's manifest: shapes, channels, source, parity, scaler.\n\n"
        "example:\n  ovcast info models/default --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--json", action="store_true", help="print the raw manifest as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..package import ModelPackage

    package = ModelPackage.load(args.model_dir)
    m = package.manifest
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
        return 0
    source = m.source.get("hub_id") or m.source.get("path") or m.source.get("name")
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
        ("precision", m.precision),
        ("source", f"{source} (revision {m.source.get('revision') or '-'})"),
        ("weights sha256", m.source.get("weights_sha256", "")),
        (
            "parity fp32",
            f"max abs {parity.get('max_abs_error', float('nan')):.2e}, "
            f"max rel {parity.get('max_rel_error', float('nan')):.2e}",
        ),
        ("scaler", _scaler_text(m)),
        ("tuned config", json.dumps(m.runtime_config) if m.runtime_config else "none"),
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
