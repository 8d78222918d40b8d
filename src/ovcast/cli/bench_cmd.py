"""ovcast bench MODEL_DIR: OpenVINO vs PyTorch vs ONNX Runtime, servers, and the limit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
from pathlib import Path

log = logging.getLogger("ovcast.bench")

DESCRIPTION = """\
Benchmark a model package: every backend in one process, called in alternation on the same
windows, so ratios are fair on a noisy machine. Reports mean/p50/p95/p99/max latency,
forecasts/s, % of the machine's FP32 GEMM limit, end-to-end latency through the JSON-lines
and HTTP servers next to the bare engine, and cold start / peak RSS per backend.

examples:
  ovcast bench models/default
  ovcast bench models/default --backends openvino,torch --batch 1 --duration 5 --no-serving
  ovcast bench models/default --duration 20 --json bench.json --plot docs/bench.png \\
      --report docs/PERFORMANCE.md        # regenerates the performance page
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="latency/throughput against PyTorch and ONNX Runtime, servers, machine limit",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR")
    p.add_argument(
        "--backends",
        default=None,
        help="comma-separated: openvino, torch, onnxruntime (default: all that are installed; "
        "named ones must be)",
    )
    p.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of each timed phase: each batch size, the servers, batching (default 10); "
        "the whole run takes several times that, printed at the start",
    )
    p.add_argument("--no-serving", action="store_true", help="skip the end-to-end server runs")
    p.add_argument("--no-coldstart", action="store_true", help="skip the fresh-process runs")
    p.add_argument("--json", metavar="FILE", help="write all figures as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="latency distribution + throughput plot")
    p.add_argument(
        "--report",
        metavar="FILE.md",
        help="write the markdown performance page (its Analysis section is kept)",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="also run 'ovcast tune --dry-run' (settings and env vars) and report it",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.report import keep_analysis, markdown, plot, table
    from ..bench.run import planned_seconds, run_benchmark
    from ..errors import DataError

    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError as exc:
        raise DataError(f"--batch {args.batch!r}: expected comma-separated integers") from exc
    chosen = args.backends or "openvino,torch,onnxruntime"
    backends = [b.strip() for b in chosen.split(",") if b.strip()]
    unknown = set(backends) - {"openvino", "torch", "onnxruntime"}
    if unknown:
        raise DataError(
            f"unknown backends {sorted(unknown)}; expected openvino, torch, onnxruntime"
        )
    seconds = planned_seconds(
        args.duration,
        batches=len(batches),
        backends=len(backends),
        serving=not args.no_serving,
        coldstart=not args.no_coldstart,
    )
    log.info(
        "benchmarking for about %.0f s (%g s per timed phase; --duration sets it)",
        seconds,
        args.duration,
    )
    results = run_benchmark(
        args.model_dir,
        backends=backends,
        batches=batches,
        duration_s=args.duration,
        serving=not args.no_serving,
        coldstart=not args.no_coldstart,
        required=backends if args.backends else ("openvino",),
    )
    if args.tune:
        from ..bench.tune import tune

        results["tune"] = tune(args.model_dir, duration_s=args.duration / 2, save=False).table()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
    if args.report:
        command = _command_line(args)
        # the page links the plot relative to itself
        plot_name = os.path.relpath(args.plot, Path(args.report).parent) if args.plot else None
        report = Path(args.report)
        previous = report.read_text() if report.is_file() else ""
        report.write_text(
            markdown(
                results, command=command, plot_name=plot_name, analysis=keep_analysis(previous)
            )
        )
    return 0


def _command_line(args: argparse.Namespace) -> str:
    """The command that regenerates the page, from the options actually used."""
    parts = [
        "ovcast",
        "bench",
        args.model_dir,
        "--backends",
        args.backends or "openvino,torch,onnxruntime",
        "--batch",
        args.batch,
        "--duration",
        f"{args.duration:g}",
    ]
    parts += ["--no-serving"] * args.no_serving + ["--no-coldstart"] * args.no_coldstart
    parts += ["--tune"] * args.tune
    for flag in ("json", "plot", "report"):
        if getattr(args, flag):
            parts += [f"--{flag}", getattr(args, flag)]
    return " ".join(shlex.quote(p) for p in parts)
