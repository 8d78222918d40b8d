"""ovcast tune MODEL_DIR: measure CPU settings here and store the best in the package."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tune",
        help="measure threads/streams/pinning/precision/batch and store the best in the package",
        description="Measure the OpenVINO CPU settings on this machine (threads, streams, pinning, "
        "bf16 where supported, batch) in alternation, store the best in the package manifest "
        "(Engine then uses it by default), and measure the guide's environment variables one by "
        "one against none.\n\nexamples:\n  ovcast tune models/default\n"
        "  ovcast tune models/default --objective throughput --duration 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--objective", choices=("latency", "throughput"), default="latency")
    p.add_argument("--duration", type=float, default=3.0, help="seconds of alternation (default 3)")
    p.add_argument("--no-env", action="store_true", help="skip the environment-variable probes")
    p.add_argument("--dry-run", action="store_true", help="measure and report; do not save")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.tune import tune

    report = tune(
        args.model_dir,
        objective=args.objective,
        duration_s=args.duration,
        measure_env=not args.no_env,
        save=not args.dry_run,
    )
    print(report.table())
    if not args.dry_run:
        print(
            f"saved {report.best['config']} as runtime_config[{args.objective!r}] in {args.model_dir}"
        )
    return 0
