"""A local fake Coinbase: a real WebSocket server and a REST server on 127.0.0.1.

Speaks the Exchange (``matches``/``heartbeat``) and Advanced Trade (``market_trades``/
``heartbeats``) dialects, serves ``/products/{id}/trades`` (cursor paging) for gap repair,
and can misbehave on request: close cleanly (1000) or abruptly, go silent, skip trade ids on
the socket (keeping them on REST), repeat trades on resubscribe, refuse invalid products.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import serve


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeCoinbase:
    def __init__(self, products=("BTC-USD",)) -> None:
        self.products = set(products)
        self.trades: dict[str, list[dict]] = {p: [] for p in products}
        self.candles: dict[str, list[list]] = {p: [] for p in products}  # [time, l, h, o, c, v]
        self.skip_ids: set[int] = set()
        self.silent = False
        self.clients: set = set()
        self.subscribes = 0
        self._next_id = 100

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

    # -- behaviour ------------------------------------------------------------------------
    async def trade(
        self, product: str, price: str, size: str = "0.1", t: float = 1_700_000_000.0
    ) -> int:
        """A new trade: recorded for REST, sent to subscribers unless its id is skipped."""
        self._next_id += 1
        trade = {
            "trade_id": self._next_id,
            "product_id": product,
            "price": price,
            "size": size,
            "side": "buy",
            "time": iso(t),
        }
        self.trades[product].append(trade)
        if self._next_id not in self.skip_ids and not self.silent:
            for ws, dialect in list(self.clients):
                await ws.send(json.dumps(self._wire(trade, dialect)))
        return self._next_id

    async def heartbeat(self, product: str) -> None:
        last = self.trades[product][-1]["trade_id"] if self.trades[product] else 0
        for ws, dialect in list(self.clients):
            if dialect == "exchange":
                await ws.send(
                    json.dumps(
                        {
                            "type": "heartbeat",
                            "sequence": 1,
                            "last_trade_id": last,
                            "product_id": product,
                            "time": iso(1_700_000_000),
                        }
                    )
                )

    async def close_all(self, *, clean: bool = True) -> None:
        for ws, _ in list(self.clients):
            if clean:
                await ws.close(1000, "bye")
            else:
                ws.transport.abort()

    # -- protocol -------------------------------------------------------------------------
    def _wire(self, trade: dict, dialect: str, *, kind: str = "match") -> dict:
        if dialect == "exchange":
            return {
                "type": kind,
                "sequence": trade["trade_id"] * 3,
                "maker_order_id": "m",
                "taker_order_id": "t",
                **trade,
            }
        wire = {**trade, "trade_id": str(trade["trade_id"]), "side": "BUY"}
        return {
            "channel": "market_trades",
            "timestamp": trade["time"],
            "sequence_num": 0,
            "events": [
                {"type": "snapshot" if kind == "last_match" else "update", "trades": [wire]}
            ],
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
                if dialect == "exchange":
                    reply = {
                        "type": "subscriptions",
                        "channels": [
                            {"name": "matches", "product_ids": message["product_ids"]},
                            {"name": "heartbeat", "product_ids": message["product_ids"]},
                        ],
                    }
                else:
                    reply = {
                        "channel": "subscriptions",
                        "events": [{"subscriptions": {"market_trades": message["product_ids"]}}],
                    }
                await ws.send(json.dumps(reply))
                for product in message["product_ids"]:  # the repeat every resubscribe brings
                    if self.trades[product]:
                        await ws.send(
                            json.dumps(
                                self._wire(self.trades[product][-1], dialect, kind="last_match")
                            )
                        )
                entry = (ws, dialect)
                self.clients.add(entry)
        finally:
            if entry:
                self.clients.discard(entry)


class _Rest(BaseHTTPRequestHandler):
    fake: FakeCoinbase

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if (
            len(parts) == 7
            and parts[:5] == ["api", "v3", "brokerage", "market", "products"]
            and parts[6] == "ticker"
            and parts[5] in self.fake.trades
        ):  # Advanced Trade
            latest = sorted(self.fake.trades[parts[5]], key=lambda t: -t["trade_id"])[:1000]
            body = json.dumps(
                {"trades": [{**t, "trade_id": str(t["trade_id"])} for t in latest]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        is_product = len(parts) == 3 and parts[0] == "products" and parts[1] in self.fake.trades
        if is_product and parts[2] == "candles":
            query = parse_qs(url.query)
            start, end = _epoch(query["start"][0]), _epoch(query["end"][0])
            rows = [r for r in self.fake.candles[parts[1]] if start <= r[0] <= end]
            body = json.dumps(sorted(rows, key=lambda r: -r[0])[:300]).encode()  # newest first
            self.send_response(200)
        elif is_product and parts[2] == "trades":
            query = parse_qs(url.query)
            after = int(query.get("after", [10**12])[0])
            limit = int(query.get("limit", [100])[0])
            page = sorted(
                (t for t in self.fake.trades[parts[1]] if t["trade_id"] < after),
                key=lambda t: -t["trade_id"],
            )[:limit]
            body = json.dumps(page).encode()
            self.send_response(200)
        else:
            body = json.dumps({"message": "NotFound"}).encode()
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _epoch(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
