"""ovcast serve: JSON lines on stdin/stdout for a pipeline, KServe v2 over HTTP, or on Ray Serve."""

from __future__ import annotations

import argparse
import os
import sys

from ._options import add_options, from_args

API_KEY_ENV = "OVCAST_API_KEY"

DESCRIPTION = """\
Serve model packages: one core (validation, raw scaling, channel selection, micro-batching,
bounded queues, metrics, hot swap) behind two front ends that accept and refuse the same
inputs.

--mode jsonl: one JSON request per stdin line, one response per stdout line, in order:
  in:  {"request_id": "1", "timestamp_ms": 1705678900000, "past_values": [[...], ...]}
  out: {"request_id": "1", "timestamp_ms": 1705678900000, "predictions": [[...], ...],
        "inference_time_ms": 5.2, "success": true}
  past_values is [context][channels] (e.g. [512][7]); predictions is [horizon][channels]
  ([96][7]), or [horizon][len(channels)] when channels are selected. Errors answer
  {"request_id": ..., "success": false, "error": {"code": ..., "message": ...}} and the
  server goes on. Commands: {"command": "reload" | "load" | "unload" | "index" | "metrics"}.
  Ready: stderr logs "ready ..."; --ready-line also writes {"event": "ready", ...} as the
  first stdout line. EOF or SIGTERM: answer what was received, exit 0. SIGHUP: hot swap
  (coalesced; during start-up, once started).

--mode http: KServe v2 REST on --host/--port (default 127.0.0.1:8000) on uvicorn, as
  OpenVINO Model Server and Triton speak it: GET /v2/health/live, /v2/health/ready (200
  once loaded and warmed up), /v2/models/NAME[/versions/V][/ready], POST .../infer (JSON
  tensors or the binary tensor extension; parameters {"raw": true, "channels": [0]}),
  POST /v2/repository/index, /v2/repository/models/NAME/load and /unload (by name, from
  --repository; off on non-loopback addresses unless --allow-model-control), GET /metrics
  (Prometheus). SIGHUP: hot swap. SIGTERM: drain, exit 0. Bounded: request headers must
  arrive within --header-timeout-s and fit in 32 KiB; --max-connections; on loopback only
  Host localhost, 127.0.0.1, [::1] and --allowed-host names are answered (DNS rebinding).

--mode ray: the same KServe v2 routes on a Ray cluster (pip install 'ovcast[ray]'): every
  replica runs this serving core, Ray's HTTP proxy listens on --host/--port. Joins the
  cluster at --address (default: starts a local one); --replicas (default: one per
  --replica-cpus of the cluster's CPUs) or --autoscale on queue length. A request whose
  replica dies is sent to another one. Model files must be at the same path on every node.
  SIGHUP: hot swap on every replica, in place (a refused package leaves the old one serving).
  SIGTERM: remove the application, exit 0. Load and unload over HTTP are off (they would
  change one replica only). Where Serve already runs, --host/--port must be its proxy's.

Models: --model DIR (named by its manifest), --model NAME=DIR (repeatable), and/or
  --repository DIR (the OVMS layout `ovcast convert --repository` writes: DIR/config.json,
  DIR/NAME/VERSION/). A DIR of numbered version folders serves the highest version (or
  what config.json's model_version_policy says).

examples:
  ovcast serve --mode http --model models/default --port 8000
  ovcast serve --mode http --model btc=models/btc --model eth=models/eth
  ovcast serve --mode http --repository ovms-models/ --max-batch-size 8
  OVCAST_API_KEY=s3cret ovcast serve --mode http --host 0.0.0.0 --repository ovms-models/
  ovcast serve --mode ray --model models/default --max-batch-size 8
  ovcast serve --mode ray --address 10.0.0.5:6379 --model /shared/models/btc --replicas 8
  ovcast serve --mode jsonl --model models/default --ready-line
  ovcast serve --mode jsonl --model models/default --raw --channels 0   # close price only
"""


def register(subparsers) -> None:
    # Here, not at the top: serve.config imports cli._options, which imports this package.
    from ..serve.config import HttpConfig, JsonLinesConfig, ServiceConfig
    from ..serve.ray.config import RayConfig

    p = subparsers.add_parser(
        "serve",
        help="serve model packages over JSON lines (stdin/stdout), HTTP (KServe v2) or Ray Serve",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mode", choices=("jsonl", "http", "ray"), default="jsonl", help="front end")
    p.add_argument(
        "--model",
        action="append",
        metavar="[NAME=]DIR",
        help="a model package folder (or a folder of version folders) to serve; repeatable",
    )
    p.add_argument(
        "--repository",
        metavar="DIR",
        help="a model repository (OVMS layout); its models are served and load/unload by name",
    )
    add_options(p, ServiceConfig)
    add_options(p.add_argument_group("jsonl mode"), JsonLinesConfig)
    add_options(p.add_argument_group("http and ray modes"), HttpConfig)
    add_options(p.add_argument_group("ray mode"), RayConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..serve.config import HttpConfig, JsonLinesConfig, ServiceConfig
    from ..serve.core import ForecastService
    from ..serve.repository import Repository, parse_model_option

    repository = Repository([parse_model_option(m) for m in args.model or []], args.repository)
    service = ForecastService(repository, from_args(ServiceConfig, args))
    if args.mode in ("http", "ray"):
        # Given but empty (--api-key "$UNSET" or OVCAST_API_KEY=) is refused, never "no key".
        key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
        config = from_args(HttpConfig, args, api_key=key)
    if args.mode == "http":
        from ..serve.http import HttpFrontEnd

        front = HttpFrontEnd(service, config)
        service.check()  # a missing or broken package fails here, before binding or compiling
        return _exit(front.serve(), front.clean_exit)
    if args.mode == "ray":
        from ..errors import require
        from ..serve.ray.config import RayConfig

        service.check()  # a missing or broken package fails here, before touching a cluster
        require("ray.serve", extra="ray", purpose="--mode ray")
        from ..serve.ray.cluster import run_ray_server

        return run_ray_server(
            repository.models, args.repository, service.config, config, from_args(RayConfig, args)
        )
    from ..serve.jsonl import JsonLinesServer

    service.check()
    server = JsonLinesServer(service)
    code = server.serve(ready_line=from_args(JsonLinesConfig, args).ready_line)
    return _exit(code, server.clean_exit)


def _exit(code: int, clean: bool) -> int:
    """``code``; but when a thread is still inside OpenVINO (a compile that outlived the
    shutdown wait), leave now with ``os._exit``: the interpreter's teardown would abort."""
    if not clean:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
