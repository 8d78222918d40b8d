"""A local fake Coinbase: a real WebSocket server and a REST server on 127.0.0.1.

Speaks both dialects with the message order of the real feeds
(``shared/notes/coinbase-protocol.md``):
- Exchange: ``subscriptions``, then one ``last_match`` per product (a repeat of its latest
  trade) on every (re)subscribe, then ``match`` messages; ``heartbeat`` with
  ``last_trade_id`` and the exchange ``time``; ``sequence`` jumps freely.
- Advanced Trade: ``subscriptions``, then a ``market_trades`` ``snapshot`` of the latest
  ``snapshot_size`` trades, then ``update`` events; within every event trades are listed
  newest first; string ids, 9-digit timestamps; ``heartbeats`` with a counter and a
  Go-format ``current_time``.
REST: ``/time`` (both APIs), Exchange ``/products/{id}/candles`` (newest first) and
``/products/{id}/trades`` (cursor paging by id, ``CB-AFTER``), Advanced Trade
``/api/v3/brokerage/market/products/{id}/ticker`` (latest trades, ``end`` paging).

Trade ids are consecutive per product, as on Coinbase. The exchange clock is ``now``
(``None``: the real clock); trades default to it. Misbehaviour on request: close cleanly
(1000) or abruptly, go silent, skip ids on the socket (kept on REST), send raw text,
answer REST requests with queued faults (status codes, malformed bodies), hold REST
requests until the test lets them go (``rest_gates``: a slow REST), answer subscribes with
queued ``error`` messages (``subscribe_errors``: a rate limit on a resubscribe).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def iso(t: float, digits: int = 6) -> str:
    stamp = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return stamp + ("000" if digits == 9 else "") + "Z"


class FakeCoinbase:
    def __init__(
        self, products=("BTC-USD",), *, now: float | None = None, clock=None, snapshot_size=100
    ):
        self.products = set(products)
        self.now = now
        self._clock = clock  # a callable (e.g. the test's ManualClock.time) overrides `now`
        self.snapshot_size = snapshot_size
        self.trades: dict[str, list[dict]] = {p: [] for p in products}
        self.candles: dict[str, list[list]] = {p: [] for p in products}  # [time, l, h, o, c, v]
        self.next_id: dict[str, int] = {p: 100 for p in products}
        self.skip_ids: set[tuple[str, int]] = set()
        self.silent = False
        self.clients: set = set()
        self.subscribes = 0
        self.rest_faults: list[tuple[str, int, str]] = []  # (path part, status, body), FIFO
        self.rest_gates: dict[str, threading.Event] = {}  # path part -> answered once set
        self.rest_waiting: list[str] = []  # paths held at a gate right now
        self.subscribe_errors: list[dict] = []  # answers to the next subscribes, FIFO
        self.rest_paths: list[str] = []
        self._sequence = 0

    def clock(self) -> float:
        if self._clock is not None:
            return self._clock()
        return time.time() if self.now is None else self.now

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> FakeCoinbase:
        self._ws = await serve(self._session, "127.0.0.1", 0)
        self.ws_url = f"ws://127.0.0.1:{self._ws.sockets[0].getsockname()[1]}"
        handler = type("H", (_Rest,), {"fake": self})
        self._rest = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._rest.serve_forever, daemon=True).start()
        self.rest_url = f"http://127.0.0.1:{self._rest.server_address[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        self._ws.close()
        await self._ws.wait_closed()
        self._rest.shutdown()
        self._rest.server_close()

    # -- behaviour ------------------------------------------------------------------------
    def add_trade(self, product: str, price: str, size: str = "0.1", t: float | None = None):
        """A trade that happened (REST has it); not sent on the socket."""
        self.next_id[product] += 1
        trade = {
            "trade_id": self.next_id[product],
            "product_id": product,
            "price": price,
            "size": size,
            "side": "buy",
            "time": iso(self.clock() if t is None else t),
        }
        self.trades[product].append(trade)
        return trade

    async def trade(
        self, product: str, price: str, size: str = "0.1", t: float | None = None
    ) -> int:
        """A new trade: recorded for REST, sent to subscribers unless skipped or silent."""
        (trade_id,) = await self.batch(product, [(price, size, t)])
        return trade_id

    async def batch(self, product: str, trades: list[tuple[str, str, float | None]]) -> list[int]:
        """Trades in one go: Advanced Trade gets one ``update`` event, newest first; the
        Exchange one ``match`` per trade, in order."""
        made = [self.add_trade(product, *t) for t in trades]
        sent = [t for t in made if (product, t["trade_id"]) not in self.skip_ids]
        if sent and not self.silent:
            for ws, dialect in list(self.clients):
                if dialect == "exchange":
                    for t in sent:
                        await ws.send(json.dumps(self._match(t)))
                else:
                    await ws.send(json.dumps(self._market_trades(sent, "update")))
        return [t["trade_id"] for t in made]

    async def heartbeat(self, product: str, *, last_trade_id=None, t: float | None = None) -> None:
        last = self.trades[product][-1]["trade_id"] if self.trades[product] else 0
        stamp = iso(self.clock() if t is None else t)
        for ws, dialect in list(self.clients):
            self._sequence += 1
            if dialect == "exchange":
                message = {
                    "type": "heartbeat",
                    "sequence": self._sequence * 7,
                    "last_trade_id": last if last_trade_id is None else last_trade_id,
                    "product_id": product,
                    "time": stamp,
                }
            else:
                message = {
                    "channel": "heartbeats",
                    "client_id": "",
                    "timestamp": stamp[:-1] + "123Z",
                    "sequence_num": self._sequence,
                    "events": [
                        {
                            "current_time": "2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.5",
                            "heartbeat_counter": self._sequence,
                        }
                    ],
                }
            await ws.send(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        for ws, _ in list(self.clients):
            await ws.send(text)

    async def close_all(self, *, clean: bool = True) -> None:
        for ws, _ in list(self.clients):
            if clean:
                await ws.close(1000, "bye")
            else:
                ws.transport.abort()

    # -- protocol -------------------------------------------------------------------------
    def _match(self, trade: dict, kind: str = "match") -> dict:
        self._sequence += 3  # matches see a subset of the sequence: jumps are normal
        return {
            "type": kind,
            "sequence": self._sequence,
            "maker_order_id": "m",
            "taker_order_id": "t",
            **trade,
        }

    def _market_trades(self, trades: list[dict], kind: str) -> dict:
        self._sequence += 1
        wire = [
            {
                **t,
                "trade_id": str(t["trade_id"]),
                "side": "BUY",
                "time": t["time"][:-1] + "000Z",  # 9 fractional digits
            }
            for t in sorted(trades, key=lambda t: -t["trade_id"])  # newest first, as Coinbase
        ]
        return {
            "channel": "market_trades",
            "client_id": "",
            "timestamp": iso(self.clock(), 9),
            "sequence_num": self._sequence,
            "events": [{"type": kind, "trades": wire}],
        }

    async def _session(self, ws) -> None:
        entry = None
        try:
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") != "subscribe":
                    continue
                dialect = "advanced" if "channel" in message else "exchange"
                if dialect == "advanced" and message["channel"] == "heartbeats":
                    continue
                if self.subscribe_errors:
                    await ws.send(json.dumps(self.subscribe_errors.pop(0)))
                    await ws.close(1000)
                    return
                bad = [p for p in message.get("product_ids", []) if p not in self.products]
                if bad:
                    await ws.send(
                        json.dumps(
                            {
                                "type": "error",
                                "message": "Failed to subscribe",
                                "reason": f"{bad[0]} is not a valid product",
                            }
                        )
                    )
                    await ws.close(1000)
                    return
                self.subscribes += 1
                products = message["product_ids"]
                if dialect == "exchange":
                    reply = {
                        "type": "subscriptions",
                        "channels": [
                            {"name": "matches", "product_ids": products},
                            {"name": "heartbeat", "product_ids": products},
                        ],
                    }
                else:
                    reply = {
                        "channel": "subscriptions",
                        "client_id": "",
                        "timestamp": iso(self.clock(), 9),
                        "sequence_num": 0,
                        "events": [
                            {"subscriptions": {"market_trades": products, "heartbeats": []}}
                        ],
                    }
                await ws.send(json.dumps(reply))
                for product in products:  # the repeat every resubscribe brings
                    recent = self.trades[product][-self.snapshot_size :]
                    if not recent:
                        continue
                    if dialect == "exchange":
                        await ws.send(json.dumps(self._match(recent[-1], "last_match")))
                    else:
                        await ws.send(json.dumps(self._market_trades(recent, "snapshot")))
                entry = (ws, dialect)
                self.clients.add(entry)
        except ConnectionClosed:
            pass  # the client went away (or was dropped by a test): nothing to clean but this
        finally:
            if entry:
                self.clients.discard(entry)


class _Rest(BaseHTTPRequestHandler):
    fake: FakeCoinbase

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body, headers: dict | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        fake = self.fake
        url = urlparse(self.path)
        fake.rest_paths.append(url.path)
        for part, gate in list(fake.rest_gates.items()):
            if part in url.path:
                fake.rest_waiting.append(url.path)
                gate.wait(20)  # bounded: a test that forgets its gate still ends
                fake.rest_waiting.remove(url.path)
        for k, (part, status, body) in enumerate(fake.rest_faults):
            if part in url.path:
                del fake.rest_faults[k]
                return self._reply(status, body)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        now = fake.clock()
        if url.path == "/time":
            return self._reply(200, {"iso": iso(now), "epoch": now})
        if url.path == "/api/v3/brokerage/time":
            return self._reply(
                200,
                {
                    "iso": iso(now),
                    "epochSeconds": str(int(now)),
                    "epochMillis": str(int(now * 1e3)),
                },
            )
        if (
            len(parts) == 7
            and parts[:5] == ["api", "v3", "brokerage", "market", "products"]
            and parts[6] == "ticker"
            and parts[5] in fake.trades
        ):  # Advanced Trade: latest trades at or before `end`, newest first
            end = float(query.get("end", "inf"))
            rows = [t for t in fake.trades[parts[5]] if _epoch(t["time"]) <= end]
            latest = sorted(rows, key=lambda t: -t["trade_id"])[: int(query.get("limit", 100))]
            return self._reply(
                200,
                {
                    "trades": [
                        {**t, "trade_id": str(t["trade_id"]), "side": "BUY"} for t in latest
                    ],
                    "best_bid": "",
                    "best_ask": "",
                },
            )
        is_product = len(parts) == 3 and parts[0] == "products" and parts[1] in fake.trades
        if is_product and parts[2] == "candles":
            start, end = _epoch(query["start"]), _epoch(query["end"])
            rows = [r for r in fake.candles[parts[1]] if start <= r[0] <= end]
            return self._reply(200, sorted(rows, key=lambda r: -r[0])[:300])  # newest first
        if is_product and parts[2] == "trades":
            after = int(query.get("after", 10**12))
            page = sorted(
                (t for t in fake.trades[parts[1]] if t["trade_id"] < after),
                key=lambda t: -t["trade_id"],
            )[: int(query.get("limit", 100))]
            headers = {"CB-AFTER": str(page[-1]["trade_id"])} if page else {}
            return self._reply(200, page, headers)
        return self._reply(404, {"message": "NotFound"})


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
