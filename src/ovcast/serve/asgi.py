"""Running an ASGI app on uvicorn: a socket we bind ourselves, then serve and drain.

    sock = listen("127.0.0.1", 0, what="the HTTP server")     # ServerStartError if busy
    server = AsgiServer(app, sock, drain_timeout_s=10)
    server.run()             # main thread: SIGTERM/SIGINT drain and return
    server.start(); ...; server.stop()                        # or in a background thread

Binding here, not in uvicorn, gives the port (0 picks one) before serving and turns a busy
address into one ``ServerStartError`` instead of uvicorn's ``sys.exit``. uvicorn brings what
the hand-written stack lacked: a real HTTP parser (httptools) that frames every body by its
Content-Length or chunks, a listen backlog of 2048, TCP_NODELAY (asyncio sets it on every
TCP transport, uvloop too), idle keep-alive connections closed at once on shutdown,
"Connection: close" on responses finished while draining, and a time limit on the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from ..errors import ServerStartError

log = logging.getLogger(__name__)

BACKLOG = 2048  # uvicorn's default; the stdlib server's 5 reset 10 of 32 simultaneous connects


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
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class AsgiServer:
    """uvicorn on a bound socket; ``on_exit`` runs when a stop is asked (readiness goes 503)."""

    def __init__(
        self,
        app: Callable,
        sock: socket.socket,
        *,
        drain_timeout_s: float = 10.0,
        on_exit: Callable[[], None] | None = None,
        on_hangup: Callable[[], object] | None = None,
    ) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,  # ovcast's logging (stderr) stays in charge
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=math.ceil(drain_timeout_s),  # whole seconds
            timeout_keep_alive=5,
            server_header=False,
            date_header=False,
        )
        self.server = _Server(config, on_exit, on_hangup)
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
    ) -> None:
        super().__init__(config)
        self._on_exit, self._on_hangup = on_exit, on_hangup

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
