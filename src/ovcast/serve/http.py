"""The HTTP server: KServe v2 REST (JSON and binary tensors), Prometheus metrics.

    ovcast serve --mode http --model models/default --host 127.0.0.1 --port 8000

Hot swap: SIGHUP, or POST /v2/repository/models/{name}/load (optional body
{"parameters": {"model_dir": DIR}}), loads and checks the package beside the running one and
switches; in-flight requests finish on the old model; a bad package is refused (400).

Lifecycle: bind and answer ``/v2/health/live`` at once; load and warm up the model;
only then ``/v2/health/ready`` says 200. SIGTERM (or SIGINT) stops accepting connections,
lets in-flight requests finish, drains the batcher and exits 0.

Threads: one per connection (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive). Without
batching a request calls the thread-safe ``Engine.predict`` directly: no thread hop. With
``--max-batch-size`` > 1, requests go through the ``MicroBatcher``.
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

import orjson

from .. import __version__
from ..errors import OvcastError
from ..package import ModelPackage
from ..runtime.engine import Engine
from ..runtime.slot import EngineSlot
from . import kserve
from .batching import MicroBatcher, Overloaded, TimedOut
from .listen import listen
from .metrics import ServerMetrics

log = logging.getLogger(__name__)

_MODEL_PATH = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<rest>/ready|/infer)?$"
)
_LOAD_PATH = re.compile(r"^/v2/repository/models/(?P<name>[^/]+)/load$")
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass
class HttpConfig:
    model_dir: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 1  # 1 = off: one client gets only queueing delay (docs/PERFORMANCE.md)
    max_queue_delay_us: int = 500
    max_queue_size: int = 256  # requests waiting or running; more get 503
    request_timeout_s: float = 10.0
    threads: int | None = None
    cache_dir: str | None = None


class ForecastHTTPServer:
    """Owns the listening socket, the engine, the batcher and the metrics."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.slot: EngineSlot | None = None
        self.batcher: MicroBatcher | None = None
        self.ready = threading.Event()
        self._slots = threading.BoundedSemaphore(config.max_queue_size)
        self.draining = threading.Event()
        self._idle: set[socket.socket] = set()  # keep-alive connections between requests
        self._idle_lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = listen(config.host, config.port, handler, what="the HTTP server")
        self.httpd.daemon_threads = False  # server_close() waits for in-flight requests
        self.port = self.httpd.server_address[1]

    @property
    def engine(self) -> Engine:
        return self.slot.engine

    def load(self) -> None:
        """Load, compile and warm up; then report ready."""
        loader = partial(Engine, threads=self.config.threads, cache_dir=self.config.cache_dir)
        self.slot = EngineSlot(self.config.model_dir, loader)
        if self.config.max_batch_size > 1:
            self.batcher = MicroBatcher(
                lambda windows: self.slot.engine.predict(windows),
                self.metrics,
                max_batch_size=self.config.max_batch_size,
                max_queue_delay_us=self.config.max_queue_delay_us,
                max_queue_size=self.config.max_queue_size,
            )
        self.ready.set()
        log.info("ready model=%s on http://%s:%d", self.engine.name, self.config.host, self.port)

    def serve(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        thread = threading.Thread(target=self.httpd.serve_forever, name="ovcast-http", daemon=True)
        thread.start()
        log.info(
            "live on http://%s:%d (loading %s)", self.config.host, self.port, self.config.model_dir
        )
        stop = threading.Event()
        previous = {
            s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.load()
            stop.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.shutdown()
            thread.join()
        return 0

    def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish, drain the batcher."""
        log.info("shutting down: finishing in-flight requests")
        self.draining.set()  # readiness says 503; answered connections close after their response
        self.httpd.shutdown()  # stops accepting
        with self._idle_lock:  # idle keep-alive readers see EOF; busy ones still answer
            for connection in self._idle:
                try:
                    connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
        self.httpd.server_close()  # joins the request threads
        if self.batcher is not None:
            self.batcher.close()
        log.info("stopped")

    def infer(self, body: bytes, header_length: int | None) -> tuple[bytes, dict[str, str]]:
        engine = self.slot.engine  # once: a reload during this request does not affect it
        request = kserve.decode_infer(engine, body, header_length)
        if self.batcher is not None:
            result = self.batcher.submit(request.windows, self.config.request_timeout_s)
        else:
            start = time.perf_counter()
            result = engine.predict(request.windows)
            self.metrics.observe(self.metrics.inference_s, time.perf_counter() - start)
            self.metrics.observe(self.metrics.batch_size, len(request.windows))
        return kserve.encode_infer(engine, request, result)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"ovcast/{__version__}"
    app: ForecastHTTPServer

    timeout = 60  # seconds an idle keep-alive connection is kept

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every response (measured with the binary path).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        super().handle_one_request()
        if self.app.draining.is_set():
            self.close_connection = True  # answered; no further requests on this connection
        elif not self.close_connection:
            with self.app._idle_lock:
                self.app._idle.add(self.connection)

    def parse_request(self) -> bool:
        with self.app._idle_lock:  # a request arrived: busy until answered
            self.app._idle.discard(self.connection)
        return super().parse_request()

    def finish(self) -> None:
        with self.app._idle_lock:
            self.app._idle.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    # -- routing -----------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        if path == "/v2/health/live":
            return self._json(200, {"live": True})
        if path == "/v2/health/ready":
            ready = self.app.ready.is_set() and not self.app.draining.is_set()
            return self._json(200 if ready else 503, {"ready": ready})
        if path == "/v2":
            return self._json(
                200,
                {"name": "ovcast", "version": __version__, "extensions": ["binary_tensor_data"]},
            )
        if path == "/metrics":
            return self._send(
                200,
                self.app.metrics.render().encode(),
                {"Content-Type": "text/plain; version=0.0.4"},
            )
        match = _MODEL_PATH.match(path)
        if match and match["rest"] != "/infer":
            if not self._model_found(match):
                return
            if match["rest"] == "/ready":
                return self._json(200, {"name": self.app.engine.name, "ready": True})
            return self._json(200, kserve.model_metadata(self.app.engine))
        self._error(404, f"no route GET {path}")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        body = self._read_body()
        if body is None:
            return
        load = _LOAD_PATH.match(path)
        if load:
            return self._reload(load["name"], body)
        match = _MODEL_PATH.match(path)
        if not match or match["rest"] != "/infer":
            return self._error(404, f"no route POST {path}")
        if not self._model_found(match):
            return
        started = time.perf_counter()
        if not self.app._slots.acquire(blocking=False):
            self.app.metrics.started()
            self.app.metrics.finished("overloaded", 0.0)
            return self._error(503, "server overloaded: too many requests in flight; retry later")
        self.app.metrics.started()
        outcome = "success"
        try:
            header = self.headers.get(kserve.HEADER_LENGTH)
            try:
                header_length = int(header) if header is not None else None
            except ValueError:
                raise kserve.BadRequest(f"{kserve.HEADER_LENGTH} must be an integer") from None
            payload, headers = self.app.infer(body, header_length)
            self._send(200, payload, headers)
        except kserve.BadRequest as exc:
            outcome = "bad_request"
            self._error(400, str(exc))
        except (Overloaded, TimedOut) as exc:
            outcome = "overloaded" if isinstance(exc, Overloaded) else "timeout"
            self._error(503, str(exc))
        except OvcastError as exc:
            outcome = "bad_request"
            self._error(400, str(exc))
        except Exception as exc:  # answer, log, keep serving
            outcome = "error"
            log.exception("internal error")
            self._error(500, f"internal error: {exc!r}")
        finally:
            self.app._slots.release()
            self.app.metrics.finished(outcome, time.perf_counter() - started)

    def _reload(self, name: str, body: bytes) -> None:
        """Triton's repository extension: load (here: hot-swap) the model, optionally from a dir."""
        if not self.app.ready.is_set():
            return self._error(503, "model not ready: loading or warming up")
        if name != self.app.engine.name:
            return self._error(
                404, f"unknown model {name!r}; this server has {self.app.engine.name!r}"
            )
        try:
            params = (orjson.loads(body) if body.strip() else {}).get("parameters") or {}
        except (orjson.JSONDecodeError, AttributeError):
            return self._error(400, 'expected {"parameters": {"model_dir": "..."}} or no body')
        try:
            engine = self.app.slot.reload(params.get("model_dir"))
        except OvcastError as exc:
            return self._error(400, str(exc))
        self._json(
            200, {"name": engine.name, "model_dir": self.app.slot.model_dir, "reloaded": True}
        )

    # -- helpers -----------------------------------------------------------------------
    def _model_found(self, match: re.Match) -> bool:
        if not self.app.ready.is_set():
            self._error(503, "model not ready: loading or warming up")
            return False
        if match["name"] != self.app.engine.name:
            self._error(
                404, f"unknown model {match['name']!r}; this server has {self.app.engine.name!r}"
            )
            return False
        if match["version"] not in (None, "1"):
            self._error(
                404, f"unknown version {match['version']!r} of {match['name']!r}; it has '1'"
            )
            return False
        return True

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(400, "Content-Length header is required")
            return None
        if int(length) > MAX_BODY_BYTES:
            self._error(400, f"body of {length} bytes exceeds {MAX_BODY_BYTES}")
            self.close_connection = True
            return None
        return self.rfile.read(int(length))

    def _json(self, status: int, data: Any) -> None:
        self._send(status, orjson.dumps(data), {"Content-Type": "application/json"})

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def run_http_server(config: HttpConfig) -> int:
    ModelPackage.load(config.model_dir)  # fail fast, before binding, on a missing package
    return ForecastHTTPServer(config).serve()
