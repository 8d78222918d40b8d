"""ovcast bench MODEL_DIR: OpenVINO vs PyTorch vs ONNX Runtime, the fast path, load, servers."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
from pathlib import Path
from typing import Any

from ._options import positive_seconds

log = logging.getLogger("ovcast.bench")

BACKENDS = ("openvino", "openvino-bf16", "torch", "onnxruntime")
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
# Memory one window of a batch may take across the backends (inputs, activations, torch's
# autograd-free intermediates), as a multiple of its input: a guard against a batch that
# would exhaust the machine, not a measurement (ovcast bench measures peak RSS).
WORKING_SET_PER_INPUT = 64

DESCRIPTION = """\
Benchmark a model package: every backend in one process, called in alternation on the same
windows, so ratios are fair on a noisy machine. Reports mean/p50/p95/p99/max latency,
forecasts/s and % of the machine's GEMM limit (f32, and bf16 where the CPU has bf16 units);
the batch-1 fast path step by step (export rewrites, static batch-1 model, bf16); forecasts/s
for 1, 2, 4 and 8 concurrent clients and predict_many in the throughput configuration;
end-to-end latency through the JSON-lines and HTTP servers next to the bare engine; cold
start and peak RSS per backend; the targets, and what stands in the way of each missed one.

Options are checked before anything is measured: --json/--plot/--report must be writable
files (--plot: .png, .svg or .pdf), --duration a finite number of seconds > 0, each --batch
>= 1 and within half the free memory, --backends non-empty and known. A figure that cannot
be true (a server faster than its engine, > 100% of the machine's limit) marks its target
INVALID (noisy run): rerun on a quieter machine.

Every figure names its machine. To put several machines side by side, keep one JSON per
machine beside the page (docs/bench-<machine>.json): the page lists all of them.

examples:
  ovcast bench models/default
  ovcast bench models/default --backends openvino,torch --batch 1 --duration 5 --no-serving
  ovcast bench models/default --duration 10 --json docs/bench-amd-zen-5-2cores.json \\
      --plot docs/bench-amd-zen-5-2cores.png --report docs/PERFORMANCE.md
  # on a second machine: --json docs/bench-<its machine>.json --report docs/PERFORMANCE-<it>.md,
  # then refresh the main page's machine table without measuring again:
  ovcast bench --from-json docs/bench-amd-zen-5-2cores.json --report docs/PERFORMANCE.md
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="latency/throughput against PyTorch and ONNX Runtime, servers, machine limit",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", nargs="?", help="the package to measure")
    p.add_argument(
        "--backends",
        default=None,
        help="comma-separated: openvino, openvino-bf16, torch, onnxruntime (default: all that "
        "are installed, openvino-bf16 where the CPU has bf16 units; named ones must be there)",
    )
    p.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    p.add_argument(
        "--duration",
        type=positive_seconds,
        default=10.0,
        help="seconds of each timed phase: each batch size, the fast path, throughput, clients, "
        "the servers, batching (default 10); the whole run takes several times that, printed "
        "at the start",
    )
    p.add_argument("--no-serving", action="store_true", help="skip the end-to-end server runs")
    p.add_argument("--no-coldstart", action="store_true", help="skip the fresh-process runs")
    p.add_argument(
        "--json",
        metavar="FILE",
        help="write all figures as JSON; name it bench-<machine>.json beside the page to have "
        "it listed under Machines (the run prints the machine's name)",
    )
    p.add_argument("--plot", metavar="FILE.png", help="latency distribution + throughput plot")
    p.add_argument(
        "--report",
        metavar="FILE.md",
        help="write the markdown performance page (its Analysis section is kept)",
    )
    p.add_argument(
        "--from-json",
        metavar="FILE",
        help="measure nothing: render --report (and --plot) from a saved run's JSON",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="also run 'ovcast tune --dry-run' (settings and env vars) and report it",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    _check_outputs(args)  # before any work: a run must not measure for minutes, then fail
    if args.from_json:
        if not args.report and not args.plot:
            raise ConfigError("--from-json renders a page: give --report FILE.md (or --plot)")
        results = _read_results(Path(args.from_json))
        _write_outputs(args, results, Path(args.from_json), command=results.get("command", ""))
        return 0
    if not args.model_dir:
        raise ConfigError("give MODEL_DIR (the package to measure), or --from-json FILE")
    from ..bench.report import table

    batches, backends = _check_measurement(args)
    results = _measure(args, batches, backends)
    print(table(results))
    json_path = Path(args.json) if args.json else None
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    _write_outputs(args, results, json_path, command=results["command"])
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """--json, --plot and --report are files this run can write, checked before measuring."""
    from ..errors import ConfigError
    from ._output import output_file

    for flag in ("json", "plot", "report"):
        if getattr(args, flag):
            _probe(output_file(getattr(args, flag), f"--{flag}"), f"--{flag}")
    if args.plot and Path(args.plot).suffix.lower() not in PLOT_SUFFIXES:
        raise ConfigError(
            f"--plot {args.plot}: expected a file ending in {', '.join(PLOT_SUFFIXES)}"
        )


def _probe(path: Path, flag: str) -> None:
    """Open ``path`` for appending (and remove it again if it was not there): the only sure
    test that it can be written (root may write where the bits say no; /proc refuses)."""
    from ..errors import ConfigError

    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write it ({exc.strerror})") from None
    if not existed:
        path.unlink()


def _check_measurement(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """The batch sizes and backends to measure, checked before any work: each batch >= 1 and
    small enough for this machine's free memory, the backends known and at least one."""
    from ..bench.run import default_backends
    from ..errors import ConfigError
    from ..package import ModelPackage

    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        raise ConfigError(
            f"--batch {args.batch!r}: expected comma-separated whole numbers >= 1"
        ) from None
    if any(b < 1 for b in batches):
        raise ConfigError(f"--batch {args.batch!r}: every batch size must be >= 1")
    m = ModelPackage.load(args.model_dir).manifest
    per_window = WORKING_SET_PER_INPUT * 4 * m.context_length * m.num_input_channels
    most = max(1, _available_bytes() // 2 // per_window)
    if max(batches) > most:
        raise ConfigError(
            f"--batch {max(batches)} would need about {max(batches) * per_window / 2**30:.1f} GiB "
            f"for {m.context_length} x {m.num_input_channels} windows; at most {most} fits in "
            "half of this machine's available memory"
        )
    if args.backends is None:
        return batches, default_backends()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends:
        raise ConfigError(f"--backends is empty; name one or more of {', '.join(BACKENDS)}")
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise ConfigError(f"--backends: unknown {unknown}; expected some of {', '.join(BACKENDS)}")
    return batches, backends


def _available_bytes() -> int:
    """MemAvailable from /proc/meminfo (else the physical memory)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _measure(args: argparse.Namespace, batches: list[int], backends: list[str]) -> dict[str, Any]:
    from ..bench.machine import describe, machine_slug
    from ..bench.run import planned_seconds, run_benchmark

    seconds = planned_seconds(
        args.duration,
        batches=len(batches),
        backends=len(backends),
        serving=not args.no_serving,
        coldstart=not args.no_coldstart,
    )
    log.info(
        "benchmarking on %s for about %.0f s (%g s per timed phase; --duration sets it)",
        machine_slug(describe()),
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

        results["tune"] = tune(
            args.model_dir, duration_s=args.duration / 2, save=False, check_precision=False
        ).table()
    results["command"] = _command_line(args)
    return results


def _read_results(path: Path) -> dict[str, Any]:
    from ..errors import DataError

    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if not isinstance(results, dict) or "machine" not in results or "latency" not in results:
        raise DataError(f"{path} is not the JSON of an 'ovcast bench' run")
    return results


def _write_outputs(
    args: argparse.Namespace, results: dict[str, Any], json_path: Path | None, command: str
) -> None:
    from ..bench.report import (
        keep_analysis,
        kept_block,
        machine_links,
        markdown,
        other_machines,
        plot,
    )
    from ..bench.serving import SECTION_END, SECTION_START

    if args.plot:
        plot(results, args.plot)
    if not args.report:
        return
    report = Path(args.report)
    # the page links the plot relative to itself
    plot_name = os.path.relpath(args.plot, report.parent) if args.plot else None
    previous = report.read_text() if report.is_file() else ""
    runs = other_machines(report, json_path, results)
    report.write_text(
        markdown(
            results,
            command=command,
            plot_name=plot_name,
            analysis=keep_analysis(previous),
            machines=machine_links(report, runs) if runs else None,
            kept=[b for b in [kept_block(previous, SECTION_START, SECTION_END)] if b],
        )
    )


def _command_line(args: argparse.Namespace) -> str:
    """The command that regenerates the page, from the options actually used."""
    parts = ["ovcast", "bench", args.model_dir]
    if args.backends:
        parts += ["--backends", args.backends]
    parts += ["--batch", args.batch, "--duration", f"{args.duration:g}"]
    parts += ["--no-serving"] * args.no_serving + ["--no-coldstart"] * args.no_coldstart
    parts += ["--tune"] * args.tune
    for flag in ("json", "plot", "report"):
        if getattr(args, flag):
            parts += [f"--{flag}", getattr(args, flag)]
    return " ".join(shlex.quote(p) for p in parts)
