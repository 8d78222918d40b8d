"""Running an ASGI app on uvicorn: a socket we bind ourselves, bounded connections, a drain.

    sock = listen("127.0.0.1", 0, what="the HTTP server")     # ServerStartError if busy
    server = AsgiServer(app, sock, drain_timeout_s=10)
    server.run()             # main thread: SIGTERM/SIGINT drain and return
    server.start(); ...; server.stop()                        # or in a background thread

Binding here, not in uvicorn, gives the port (0 picks one) before serving and turns a busy
address into one ``ServerStartError`` instead of uvicorn's ``sys.exit``. uvicorn brings what
the hand-written stack lacked: a real HTTP parser (httptools) that frames every body by its
Content-Length or chunks, a listen backlog of 2048, TCP_NODELAY (asyncio sets it on every
TCP transport, uvloop too), idle keep-alive connections closed after 5 s and at once on
shutdown, "Connection: close" on responses finished while draining, and a time limit on the
drain.

uvicorn's httptools protocol has no limit on a request's headers, in size or in time, and no
cap on connections (its ``limit_concurrency`` answers 503 only once a request's headers have
arrived; ``h11_max_incomplete_event_size`` applies to the slower h11 parser only). So
``_GuardedProtocol`` adds them, as ``ConnectionLimits``: a request's line and headers must
arrive within ``header_timeout_s`` (408) and fit in ``max_header_bytes`` (431); beyond
``max_connections`` a new connection is answered 503 and closed at once, so idle sockets
cannot exhaust the open-file limit. Its answers, and uvicorn's own "400 Invalid HTTP request",
are JSON ``{"error", "code"}`` like every other answer.

``HostAllowList`` is the Host header check against DNS rebinding: a server on loopback
answers only requests addressed to localhost, 127.0.0.1, [::1] or a name given with
``--allowed-host``; ``HostGuard`` applies it to any ASGI app (the dashboard's).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import resource
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import ServerStartError
from .config import MAX_CONNECTIONS

log = logging.getLogger(__name__)

BACKLOG = 2048  # uvicorn's default; the stdlib server's 5 reset 10 of 32 simultaneous connects
MAX_HEADER_BYTES = 32 * 1024  # request line and headers; nginx's default buffers hold 4 x 8 KiB
LINGER_S, LINGER_BYTES = 2.0, 1 << 20  # read on after a refusal, so that it is not reset
RESERVED_FILES = 64  # open files kept for the process itself (models, pipes, logs, the listener)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def listen(host: str, port: int, *, what: str) -> socket.socket:
    """A listening TCP socket on ``host:port``; a busy or bad address is a ServerStartError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
    except OSError as exc:  # EADDRINUSE, EADDRNOTAVAIL, a host that does not resolve
        raise ServerStartError(f"{what} cannot listen on {host}:{port}: {exc}") from exc
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def connection_cap(requested: int | None) -> int:
    """Connections a server may hold: ``requested`` or ``MAX_CONNECTIONS``, within the
    open-file limit (``ulimit -n``) less ``RESERVED_FILES``; too many asked for is refused."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else soft - RESERVED_FILES
    if requested is not None and requested > room:
        raise ServerStartError(
            f"--max-connections {requested} needs {requested + RESERVED_FILES} open files; the "
            f"limit is {soft} (ulimit -n): raise the limit or lower --max-connections"
        )
    if room < 1:
        raise ServerStartError(f"the open-file limit ({soft}, ulimit -n) leaves no connections")
    return requested if requested is not None else min(MAX_CONNECTIONS, room)


def _host_of(value: str) -> str:
    """A Host header value (or an address) without its port, lowercase, without a final dot."""
    host = value.strip().lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    elif host.count(":") > 1:  # a bare IPv6 address, as --allowed-host may give it
        host = f"[{host}]"
    return host.rstrip(".")


class HostAllowList:
    """Which Host headers a server answers: against DNS rebinding, a page of evil.example
    whose name resolves to 127.0.0.1 reads nothing from a loopback server, whose answers go
    only to requests addressed to localhost, 127.0.0.1, [::1] or an ``--allowed-host``.

    A server on another address checks only when names are given (with its own address
    added). A request without a Host header (HTTP/1.0 clients) is not a browser's: allowed.
    """

    def __init__(self, bind_host: str, extra: Iterable[str] | None = None) -> None:
        extra = list(extra or ())
        if is_loopback(bind_host) or extra:
            names = [*LOOPBACK_HOSTS, bind_host, *extra]
            self.hosts: frozenset[str] | None = frozenset(_host_of(h) for h in names)
        else:
            self.hosts = None

    def refusal(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """Why a request with these ASGI headers is refused, or None."""
        if self.hosts is None:
            return None
        for name, value in headers:
            if name == b"host":
                host = _host_of(value.decode("latin-1"))
                if host in self.hosts:
                    return None
                return (
                    f"Host {host[:100]!r} is not served here (expected one of "
                    f"{', '.join(sorted(self.hosts))}; --allowed-host adds names)"
                )
        return None


class HostGuard:
    """ASGI middleware: a request whose Host the allow-list refuses gets 403, never the app."""

    def __init__(self, app: Callable, hosts: HostAllowList) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        refusal = self.hosts.refusal(scope["headers"]) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"error": refusal, "code": "host_not_allowed"})
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds on each connection's request headers, and on the number of connections."""

    header_timeout_s: float = 10.0
    max_header_bytes: int = MAX_HEADER_BYTES
    max_connections: int = MAX_CONNECTIONS
    on_refused: Callable[[str], object] | None = None  # called with the refusal's code


class _GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with ``ConnectionLimits`` and JSON error answers.

    Head bytes are counted from the reads that arrive while a request's head is incomplete;
    a read in which a new request begins is not counted (the count may run one read, at
    most 256 KiB, behind: memory stays bounded, a pipelined body is never mistaken for a
    head). The head timer runs from the connection's opening or a request's first byte to
    its headers' end; it never fires while the server still owes an answer on the connection.
    """

    limits: ConnectionLimits = ConnectionLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_head, self._head_bytes = True, 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refuse_later: tuple[int, str, str] | None = None
        self._discarded: int | None = None  # refused: what is read on is dropped
        if len(self.connections) > self.limits.max_connections:
            self._write_refusal(
                503,
                "too_many_connections",
                f"the server holds {self.limits.max_connections} connections, its limit "
                "(--max-connections); retry later",
                linger=False,  # beyond the cap: its file descriptor goes at once
            )
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarded is not None:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        counted = self._in_head
        if counted:
            self._head_bytes += len(data)
        super().data_received(data)
        if counted and self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(
                431,
                "headers_too_large",
                f"the request line and headers exceed {self.limits.max_header_bytes} bytes",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0

    def on_response_complete(self) -> None:
        refusal, self._refuse_later = self._refuse_later, None
        if refusal is not None:  # refused while this answer was being written: now
            self.pipeline.clear()  # requests queued behind it are not started
        super().on_response_complete()
        if refusal is not None and not self.transport.is_closing():
            self._write_refusal(*refusal)

    def send_400_response(self, msg: str) -> None:  # uvicorn's answer to a framing error
        # After the answer owed, if any: a POST without a length answered 411, then its body
        # failed to parse as the next request (writing at once broke the 411's write).
        self._refuse(
            400,
            "bad_http_request",
            "malformed request: its request line, a header or its chunked framing cannot be "
            "parsed as HTTP/1.1",
        )

    def _unsupported_upgrade_warning(self) -> None:  # uvicorn's says "pip install websockets"
        log.debug("an Upgrade request (WebSocket, h2c) is answered as plain HTTP/1.1")

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._on_head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _on_head_timeout(self) -> None:
        self._head_timer = None
        if self._answering():
            self._arm_head_timer()  # the client waits on us: its next head may wait too
            return
        self._refuse(
            408,
            "header_timeout",
            f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s",
        )

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` and close; after the answer in progress, if there is one."""
        if self.transport.is_closing() or self._discarded is not None:
            return  # closed, or refused already
        self._in_head = False
        self._cancel_head_timer()
        if self._answering():
            self.flow.pause_reading()
            self._refuse_later = (status, code, message)
            return
        self._write_refusal(status, code, message)

    def _write_refusal(self, status: int, code: str, message: str, *, linger: bool = True) -> None:
        """Answer and close. ``linger``: like nginx's lingering close, first half-close and
        read on (discarding, at most ``LINGER_BYTES`` for ``LINGER_S``): closing with unread
        bytes would reset the connection, and the client lose the answer."""
        body = orjson.dumps({"error": message, "code": code})
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s"
            % (status, HTTPStatus(status).phrase.encode(), len(body), body)
        )
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self._discarded = 0
            self.flow.resume_reading()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
        if self.limits.on_refused is not None:
            self.limits.on_refused(code)
        log.debug("refused a connection: %s", message)


class AsgiServer:
    """uvicorn on a bound socket; ``on_exit`` runs when a stop is asked (readiness goes 503)."""

    def __init__(
        self,
        app: Callable,
        sock: socket.socket,
        *,
        drain_timeout_s: float = 10.0,
        limits: ConnectionLimits | None = None,
        on_exit: Callable[[], None] | None = None,
        on_hangup: Callable[[], object] | None = None,
        on_started: Callable[[], object] | None = None,
    ) -> None:
        """``on_started`` runs once uvicorn serves, its signal handlers in place."""
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.limits = limits or ConnectionLimits(max_connections=connection_cap(None))
        protocol = type("GuardedProtocol", (_GuardedProtocol,), {"limits": self.limits})
        config = uvicorn.Config(
            app,
            http=protocol,
            ws="none",  # no WebSockets: an Upgrade request is answered as plain HTTP, guarded
            log_config=None,  # ovcast's logging (stderr) stays in charge
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=math.ceil(drain_timeout_s),  # whole seconds
            timeout_keep_alive=5,
            server_header=False,
            date_header=False,
        )
        self.server = _Server(config, on_exit, on_hangup, on_started)
        self._thread: threading.Thread | None = None

    @property
    def connections(self) -> set:
        """uvicorn's protocol objects of the open connections (tests check their sockets)."""
        return self.server.server_state.connections

    def run(self) -> None:
        """Serve in this (main) thread until SIGTERM or SIGINT, then drain and return."""
        self.server.run(sockets=[self.sock])

    def start(self) -> None:
        """Serve in a background thread (no signal handling there); ``stop`` ends it."""
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])),
            name="ovcast-http",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.handle_exit_request()
        if self._thread is not None:
            self._thread.join()


class _Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        on_exit: Callable[[], None] | None,
        on_hangup: Callable[[], object] | None,
        on_started: Callable[[], object] | None,
    ) -> None:
        super().__init__(config)
        self._on_exit, self._on_hangup, self._on_started = on_exit, on_hangup, on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit and self._on_started is not None:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT drain, SIGHUP calls ``on_hangup``; unlike uvicorn's own, the
        signal is not raised again afterwards: a drained server exits 0, not by the signal."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handlers: dict[int, Callable[[Any, Any], object]] = {
            signal.SIGTERM: self.handle_exit,
            signal.SIGINT: self.handle_exit,
        }
        on_hangup = self._on_hangup
        if on_hangup is not None:
            handlers[signal.SIGHUP] = lambda sig, frame: on_hangup()
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame) -> None:  # SIGTERM, SIGINT
        log.info("signal %d: draining (at most %g s)", sig, self.config.timeout_graceful_shutdown)
        self.handle_exit_request()
        super().handle_exit(sig, frame)
        self._captured_signals.clear()  # see capture_signals

    def handle_exit_request(self) -> None:
        if self._on_exit is not None:
            self._on_exit()
        self.should_exit = True
