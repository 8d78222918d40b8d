"""ovcast info MODEL_DIR: what a model package holds."""

from __future__ import annotations

import argparse
import json


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
        ("input", f"{m.inputs[0].name} {m.inputs[0].shape} {m.inputs[0].datatype}"),
        ("output", f"{m.outputs[0].name} {m.outputs[0].shape} {m.outputs[0].datatype}"),
        ("precision", m.precision),
        ("source", f"{source} (revision {m.source.get('revision') or '-'})"),
        ("weights sha256", m.source.get("weights_sha256", "")),
        (
            "parity fp32",
            f"max abs {parity.get('max_abs_error', float('nan')):.2e}, "
            f"max rel {parity.get('max_rel_error', float('nan')):.2e}",
        ),
        ("scaler", ", ".join(ch["kind"] for ch in m.scaler["channels"]) if m.scaler else "none"),
        ("tuned config", json.dumps(m.runtime_config) if m.runtime_config else "none"),
        ("versions", ", ".join(f"{k} {v}" for k, v in m.versions.items())),
        ("created", m.created_at),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
