"""The dashboard's HTTP server: the page, its static files, and a server-sent event stream.

    server = DashboardServer(state, "127.0.0.1", 8050)
    server.start()                      # a background thread; the pipeline keeps the main one
    ...
    server.close()

Routes: ``/`` the page; ``/static/...`` its script, style and the vendored chart library
(nothing is loaded from elsewhere: the Content-Security-Policy forbids it, so the page
works offline); ``/events`` a text/event-stream (``snapshot`` first, then ``bar``,
``forecast`` and, every second, ``status``); ``/api/snapshot`` and ``/api/status`` the same
data as plain JSON for scripts. One thread per connection; a page that goes away costs a
thread until its next write fails.
"""

from __future__ import annotations

import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import orjson

from .. import __version__
from ..errors import ServerStartError
from ..serve.listen import listen
from .state import DashboardState

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
CHART_LIBRARY = STATIC / "vendor" / "lightweight-charts.mjs"
STATUS_EVERY_S = 1.0
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".LICENSE": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    # Everything comes from this server: a CDN reference would be refused, not fetched.
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
}


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT' for 127.0.0.1) -> (host, port); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8050, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def static_files() -> dict[str, Path]:
    """URL path -> file, for every file the page may load; anything else is a 404."""
    files = {
        f"/static/{p.relative_to(STATIC).as_posix()}": p for p in STATIC.rglob("*") if p.is_file()
    }
    files["/"] = STATIC / "index.html"
    return files


class DashboardServer:
    """Owns the listening socket and the stream threads; the state is the pipeline's."""

    def __init__(self, state: DashboardState, host: str = "127.0.0.1", port: int = 8050) -> None:
        if not CHART_LIBRARY.is_file():
            raise ServerStartError(
                f"the dashboard's chart library is missing ({CHART_LIBRARY}): it is vendored from "
                "the npm registry when ovcast is built; reinstall ovcast with access to "
                "registry.npmjs.org (or $npm_config_registry), without OVCAST_SKIP_FRONTEND=1"
            )
        self.state = state
        self.files = static_files()
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = listen(host, port, handler, what="the dashboard")
        self.httpd.daemon_threads = True  # open event streams must not hold up the exit
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="ovcast-dashboard", daemon=True
        )
        self._thread.start()
        log.info("dashboard at %s", self.url)

    def close(self) -> None:
        """Stop accepting and end every open event stream."""
        self.state.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: an event stream ends with it
    server_version = f"ovcast/{__version__}"
    app: DashboardServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._head_only = True
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        if path == "/events" and not getattr(self, "_head_only", False):
            return self._stream()
        if path == "/api/snapshot":
            return self._json(200, self.app.state.snapshot()[1])
        if path == "/api/status":
            return self._json(200, self.app.state.status())
        if path == "/events":  # HEAD: what a GET would start with
            return self._send(200, b"", "text/event-stream")
        file = self.app.files.get(path)
        if file is None:
            return self._json(404, {"error": f"no such page: {path} (the dashboard is at /)"})
        suffix = ".LICENSE" if file.name.endswith(".LICENSE") else file.suffix
        content_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
        return self._send(200, file.read_bytes(), content_type)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._json(405, {"error": "the dashboard is read-only: GET / for the page"})

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def _stream(self) -> None:
        state = self.app.state
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            cursor, snapshot = state.snapshot()
            self.wfile.write(b"retry: 1000\n\n")  # reconnect after a second if we go away
            self._event("snapshot", orjson.dumps(snapshot))
            next_status = time.monotonic() + STATUS_EVERY_S
            while not state.closed:
                cursor, events = state.wait(cursor, max(0.0, next_status - time.monotonic()))
                if events is None:  # fell behind: start over from a snapshot
                    cursor, snapshot = state.snapshot()
                    self._event("snapshot", orjson.dumps(snapshot))
                else:
                    for _, name, data in events:
                        self._event(name, data)
                if time.monotonic() >= next_status:
                    self._event("status", orjson.dumps(state.status()))
                    next_status = time.monotonic() + STATUS_EVERY_S
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            log.debug("event stream to %s closed by the page", self.address_string())

    def _event(self, name: str, data: bytes) -> None:
        self.wfile.write(b"event: " + name.encode() + b"\ndata: " + data + b"\n\n")

    def _json(self, status: int, data: Any) -> None:
        self._send(status, orjson.dumps(data), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if not getattr(self, "_head_only", False):
            self.wfile.write(body)
