"""ovcast doctor [MODEL_DIR]: check this machine (and a package) for what slows ovcast down."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check CPU, cores, clock, load, memory, environment and a package",
        description="The guide's troubleshooting checks, done for you: CPU and ISA, usable cores "
        "(affinity mask and cgroup quota), clock and governor, load, free memory, versions, "
        "environment variables that do nothing or hurt, and a package's tuned config. Each "
        "finding says what to do. Exit code 0 even with warnings.\n\nexample:\n  ovcast doctor models/default",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", nargs="?", help="also check this package")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.doctor import run_checks

    marks = {"ok": "ok  ", "info": "info", "warn": "WARN"}
    for f in run_checks(args.model_dir):
        print(f"[{marks[f.level]}] {f.topic:<11} {f.found}")
        if f.action:
            print(f"{'':18}-> {f.action}")
    return 0
