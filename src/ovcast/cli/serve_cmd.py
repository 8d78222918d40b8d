"""ovcast serve: the JSON-lines subprocess server (and, with --mode http, KServe v2)."""

from __future__ import annotations

import argparse
import sys
from functools import partial

DESCRIPTION = """\
Serve a model package.

--mode jsonl: one JSON request per stdin line, one response per stdout line, in order:
  in:  {"request_id": "1", "timestamp_ms": 1705678900000, "past_values": [[...], ...]}
  out: {"request_id": "1", "timestamp_ms": 1705678900000, "predictions": [[...], ...],
        "inference_time_ms": 5.2, "success": true}
  past_values is [context][channels] (e.g. [512][7]); predictions is [horizon][channels]
  ([96][7]), or [horizon][len(channels)] when channels are selected. Errors answer
  {"request_id": ..., "success": false, "error": {"code": ..., "message": ...}} and the
  server goes on. Ready: stderr logs "ready ..."; --ready-line also writes
  {"event": "ready", ...} as the first stdout line. EOF or SIGTERM: answer what was
  received, exit 0.

--mode http: KServe v2 REST on --host/--port (default 127.0.0.1:8000), as OpenVINO Model
  Server and Triton speak it: GET /v2/health/live, /v2/health/ready (200 once loaded and
  warmed up), /v2/models/NAME, /v2/models/NAME/ready, POST /v2/models/NAME/infer (JSON
  tensors or the binary tensor extension), GET /metrics (Prometheus). SIGTERM drains.

examples:
  ovcast serve --mode http --model models/default --port 8000
  ovcast serve --mode jsonl --model models/default --ready-line
  echo '{"request_id":"1","past_values":[[0.1, ...]]}' | ovcast serve --model models/default
  ovcast serve --mode jsonl --model models/default --raw --channels 0   # close price only
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model package over JSON lines (stdin/stdout) or HTTP (KServe v2)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mode", choices=("jsonl", "http"), default="jsonl")
    p.add_argument("--model", required=True, metavar="DIR", help="model package folder")
    p.add_argument(
        "--raw",
        action="store_true",
        help="requests are in raw units: scale in, inverse-scale out (package scaler)",
    )
    p.add_argument("--channels", help="comma-separated output channel indices (default: all)")
    p.add_argument(
        "--ready-line",
        action="store_true",
        help='write {"event": "ready", ...} as the first stdout line once warmed up',
    )
    p.add_argument("--max-line-bytes", type=int, default=None, help="longest accepted request line")
    http = p.add_argument_group("http mode")
    http.add_argument("--host", default="127.0.0.1")
    http.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    http.add_argument(
        "--max-batch-size",
        type=int,
        default=1,
        help="dynamic batching: windows per batch (default 1: off; helps throughput "
        "and tail latency under many concurrent clients, see docs/PERFORMANCE.md)",
    )
    http.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=500,
        help="dynamic batching: how long a batch waits for more requests",
    )
    http.add_argument(
        "--max-queue-size",
        type=int,
        default=256,
        help="requests queued or running before answering 503",
    )
    http.add_argument(
        "--request-timeout-s",
        type=float,
        default=10.0,
        help="dynamic batching: longest wait for a result before 503",
    )
    p.add_argument("--threads", type=int, help="inference threads (default: usable cores)")
    p.add_argument("--cache-dir", help="OpenVINO compiled-model cache folder (faster restarts)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import DataError
    from ..runtime.engine import Engine
    from ..runtime.slot import EngineSlot
    from ..serve.jsonl import DEFAULT_MAX_LINE_BYTES, JsonLinesServer
    from ..serve.protocol import Forecaster

    try:
        channels = [int(c) for c in args.channels.split(",")] if args.channels else None
    except ValueError as exc:
        raise DataError(f"--channels {args.channels!r}: expected comma-separated integers") from exc
    if args.mode == "http":
        from ..serve.http import HttpConfig, run_http_server

        return run_http_server(
            HttpConfig(
                model_dir=args.model,
                host=args.host,
                port=args.port,
                max_batch_size=args.max_batch_size,
                max_queue_delay_us=args.max_queue_delay_us,
                max_queue_size=args.max_queue_size,
                request_timeout_s=args.request_timeout_s,
                threads=args.threads,
                cache_dir=args.cache_dir,
            )
        )
    slot = EngineSlot(args.model, partial(Engine, threads=args.threads, cache_dir=args.cache_dir))
    engine = slot.engine
    if args.raw and engine.scaler is None:
        raise DataError(f"--raw needs a package with a scaler; {args.model} has none")
    server = JsonLinesServer(
        Forecaster(slot, channels=channels),
        default_raw=args.raw,
        max_line_bytes=args.max_line_bytes or DEFAULT_MAX_LINE_BYTES,
    )
    server.announce_ready(ready_line=args.ready_line)
    sys.stdout.flush()
    return server.serve()
