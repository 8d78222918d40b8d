"""ovcast tune MODEL_DIR: measure CPU settings here and store the best in the package."""

from __future__ import annotations

import argparse

from ._options import add_options, from_args, positive_seconds

DESCRIPTION = """\
Measure the OpenVINO CPU settings on this machine (threads, streams, pinning, the static
batch-1 model, batch) in alternation, store the best in the package manifest (Engine then
uses it by default, on this machine and OpenVINO release only: a config measured elsewhere
is ignored with a warning), and measure the guide's environment variables one by one
against none. A setting must beat the Engine's default by more than 5% at p50 to replace it:
less is noise on a shared machine.

Where the CPU has bf16 units (AVX-512 BF16, AMX), tune first measures what bf16 does to the
forecasts: their change against f32 on the package's own windows, and the change of MSE and
MAE, on --data's split when given (else on synthetic validation windows). Within tolerance
(metrics within 0.1%, forecasts within 1% RMS) the Engine then computes in bf16 by default;
'ovcast --precision f32 COMMAND' or OVCAST_PRECISION=f32 keeps f32. 'ovcast info' shows the
evidence. The record counts only on the machine and OpenVINO release that measured it, and
only within ovcast's own tolerances. --data reads the CSV's columns by the package's channel
names, as 'ovcast evaluate' does.

examples:
  ovcast tune models/default
  ovcast tune models/default --data ../shared/data/etth1/ETTh1.csv --splits etth1
  ovcast tune models/default --objective throughput --duration 5
"""


def register(subparsers) -> None:
    from ..bench.precision import PrecisionData

    p = subparsers.add_parser(
        "tune",
        help="measure threads/streams/pinning/precision/batch and store the best in the package",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument("--objective", choices=("latency", "throughput"), default="latency")
    p.add_argument(
        "--duration",
        type=positive_seconds,
        default=3.0,
        help="seconds of alternation (default 3; a finite number > 0)",
    )
    p.add_argument("--no-env", action="store_true", help="skip the environment-variable probes")
    p.add_argument("--no-bf16", action="store_true", help="do not measure bf16's accuracy")
    p.add_argument("--dry-run", action="store_true", help="measure and report; do not save")
    data = p.add_argument_group(
        "bf16 judged on a data set (a CSV of a timestamp column and the model's channels)"
    )
    data.add_argument("--data", metavar="CSV", help="score f32 and bf16 on this CSV's split")
    add_options(data, PrecisionData, exclude=("season",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.precision import PrecisionData
    from ..bench.tune import tune

    report = tune(
        args.model_dir,
        objective=args.objective,
        duration_s=args.duration,
        measure_env=not args.no_env,
        save=not args.dry_run,
        data=from_args(PrecisionData, args, data=args.data, model=args.model_dir)
        if args.data
        else None,
        check_precision=not args.no_bf16,
    )
    print(report.table())
    if not args.dry_run:
        print(
            f"saved {report.best['config']} as runtime_config[{args.objective!r}] in {args.model_dir}"
        )
    return 0
