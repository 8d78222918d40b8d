"""The one Coinbase REST client: server time, candles, and trade history, retried.

    async with CoinbaseRest(exchange_url=EXCHANGE_REST_URL, advanced_url=ADVANCED_REST_URL) as rest:
        now = await rest.server_time()
        bars = await rest.candles("BTC-USD", start_s, end_s, 60, now)
        trades, complete = await rest.trades_back("BTC-USD", "exchange", to_time_s=minute_start)

Built on ``httpx.AsyncClient``: requests run on the event loop without a thread each, with
connection pooling, per-request timeouts and one place for retries. Every request is
retried with jittered exponential backoff on a transport error, a timeout, 429 (honouring
``Retry-After``), 5xx, or an answer that is not the JSON shape the protocol promises (a
malformed page); other 4xx answers (an unknown product) fail at once with the server's
words. Requests are spaced by ``min_interval_s`` (Coinbase allows 10 public requests/s).

Endpoints (public, no key):
- Exchange ``GET /time`` -> ``{"epoch": s}``; ``GET /products/{id}/candles`` (<= 300 per
  request, newest first); ``GET /products/{id}/trades?after=ID&limit=1000``: newest first,
  ids below the ``after`` cursor, so history pages back by id.
- Advanced Trade ``GET /api/v3/brokerage/time`` -> ``{"epochSeconds": "s"}``;
  ``GET /api/v3/brokerage/market/products/{id}/ticker?limit=N&end=UNIX`` -> ``{"trades":
  [...]}`` newest first, at or before ``end``: history pages back by time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import DataError
from .aggregator import Bar
from .coinbase import BadMessage, Trade, candle_windows, parse_candles, server_epoch, trade_from

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000


class CoinbaseRestError(DataError):
    """A REST request that failed for good (after retries, or a refusal retrying can't fix)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of a refusal (4xx other than 429), if any

    @property
    def refused(self) -> bool:
        return self.status is not None and 400 <= self.status < 500


@dataclass
class RestRetry:
    attempts: int = 4
    first_backoff_s: float = 0.25
    max_backoff_s: float = 4.0

    def delay_s(self, attempt: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.max_backoff_s, self.first_backoff_s * 2**attempt)


class CoinbaseRest:
    def __init__(
        self,
        *,
        exchange_url: str | None,
        advanced_url: str | None = None,
        retry: RestRetry | None = None,
        timeout_s: float = 10.0,
        min_interval_s: float = 0.11,
    ) -> None:
        self.exchange_url = exchange_url.rstrip("/") if exchange_url else None
        self.advanced_url = advanced_url.rstrip("/") if advanced_url else None
        self.retry = retry or RestRetry()
        self.min_interval_s = min_interval_s
        self.requests = 0
        self.failures = 0  # attempts that failed (each is retried or reported)
        self._client = httpx.AsyncClient(
            timeout=timeout_s, headers={"User-Agent": "ovcast"}, follow_redirects=True
        )
        self._last_request = 0.0

    async def __aenter__(self) -> CoinbaseRest:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- the one request path ----------------------------------------------------------------
    async def get_json(self, url: str, params: dict[str, Any], what: str, check) -> Any:
        """GET ``url`` and return ``check(json)``; retried as the module says."""
        last_problem = ""
        for attempt in range(self.retry.attempts):
            if attempt:
                await asyncio.sleep(self.retry.delay_s(attempt - 1))
            await self._space()
            self.requests += 1
            try:
                response = await self._client.get(url, params=params)
            except httpx.HTTPError as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 429 or response.status_code >= 500:
                    last_problem = f"answered {response.status_code}"
                    await self._respect_retry_after(response)
                elif response.status_code >= 400:
                    raise CoinbaseRestError(
                        f"{what} answered {response.status_code} {response.content[:200]!r} "
                        f"({response.url})",
                        response.status_code,
                    )
                else:
                    try:
                        return check(response.json())
                    except (ValueError, BadMessage) as exc:  # not JSON, or not the promised shape
                        last_problem = f"malformed answer: {exc}"
            self.failures += 1
            log.warning(
                "%s: %s (attempt %d of %d)", what, last_problem, attempt + 1, self.retry.attempts
            )
        raise CoinbaseRestError(
            f"{what} failed after {self.retry.attempts} attempts: {last_problem} ({url})"
        )

    async def _space(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_request + self.min_interval_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_request = loop.time()

    async def _respect_retry_after(self, response: httpx.Response) -> None:
        try:
            seconds = float(response.headers.get("Retry-After", "0"))
        except ValueError:
            return
        await asyncio.sleep(min(max(seconds, 0.0), self.retry.max_backoff_s))

    # -- endpoints ---------------------------------------------------------------------------
    async def server_time(self) -> float:
        """The exchange's clock, epoch seconds."""
        if self.exchange_url:
            return await self.get_json(f"{self.exchange_url}/time", {}, "server time", server_epoch)
        if self.advanced_url:
            return await self.get_json(
                f"{self.advanced_url}/api/v3/brokerage/time", {}, "server time", server_epoch
            )
        raise CoinbaseRestError("no REST URL to ask the time")

    async def candles(
        self,
        product: str,
        start_s: int,
        end_s: int,
        interval_s: int,
        now_s: float,
        previous: Bar | None = None,
    ) -> list[Bar]:
        """Closed bars in [start_s, end_s), oldest first, holes filled (Exchange candles);
        with ``previous`` (the bar before ``start_s``) also the quiet minutes before the first
        row, so the result starts at ``start_s``."""
        if not self.exchange_url:
            raise CoinbaseRestError("candles need the Exchange REST URL (--rest-url)")
        rows: list[Any] = []
        windows = candle_windows(start_s, end_s, interval_s)
        if len(windows) > 10:
            log.info("%s: %d REST candle requests for %d bars", product, len(windows),
                     (end_s - start_s) // interval_s)  # fmt: skip
        for start, end in windows:
            rows.extend(
                await self.get_json(
                    f"{self.exchange_url}/products/{product}/candles",
                    {"granularity": interval_s, "start": start, "end": end},
                    f"{product}: REST candles",
                    lambda page: (parse_candles(page, interval_s, now_s), page)[1],
                )
            )
        return parse_candles(
            rows, interval_s, now_s, start_s=start_s, end_s=end_s, previous=previous
        )

    async def trade_page(
        self,
        product: str,
        dialect: str,
        *,
        before_id: int | None = None,
        end_s: float | None = None,
    ) -> list[Trade]:
        """One page of history, newest first: Exchange ids below ``before_id``; Advanced
        Trade trades at or before ``end_s``."""

        def check(answer: Any) -> list[Trade]:
            rows = answer.get("trades") if isinstance(answer, dict) else answer
            if not isinstance(rows, list):
                raise BadMessage(f"expected a list of trades, got {str(answer)[:200]}")
            trades, problems = [], []
            for row in rows:
                try:
                    trades.append(trade_from(row, product_id=product))
                except BadMessage as exc:
                    problems.append(str(exc))
            if problems and not trades:
                raise BadMessage(f"no usable trade in the page: {problems[0]}")
            if problems:  # the good ones count; the bad ones stay missing (their bars partial)
                log.warning("%s: REST trades: %d rejected, e.g. %s", product, len(problems),
                            problems[0])  # fmt: skip
            return trades

        if dialect == "exchange":
            if not self.exchange_url:
                raise CoinbaseRestError("Exchange trade history needs the Exchange REST URL")
            params: dict[str, Any] = {"limit": PAGE_LIMIT}
            if before_id is not None:
                params["after"] = before_id  # Coinbase's cursor: "after" means older than
            url = f"{self.exchange_url}/products/{product}/trades"
        else:
            if not self.advanced_url:
                raise CoinbaseRestError("Advanced Trade history needs the Advanced Trade REST URL")
            params = {"limit": PAGE_LIMIT}
            if end_s is not None:
                params["end"] = str(int(end_s) + 1)
            url = f"{self.advanced_url}/api/v3/brokerage/market/products/{product}/ticker"
        return await self.get_json(url, params, f"{product}: REST trades", check)

    async def trades_back(
        self,
        product: str,
        dialect: str,
        *,
        to_id: int | None = None,
        to_time_s: float | None = None,
        before_id: int | None = None,
        max_pages: int = 20,
    ) -> tuple[list[Trade], bool]:
        """Trades from the newest (or from below ``before_id``) back until one at or below
        ``to_id`` or older than ``to_time_s``; (trades oldest first, reached: True when the
        history was followed that far, or to its beginning, within ``max_pages``)."""
        found: dict[str, Trade] = {}
        cursor_id, cursor_time = before_id, None
        for _ in range(max_pages):
            page = await self.trade_page(product, dialect, before_id=cursor_id, end_s=cursor_time)
            new = [t for t in page if t.trade_id not in found]
            if not new and len(page) < PAGE_LIMIT:
                return _oldest_first(found), True  # the beginning of the product's history
            if not new:
                # A full page of trades already seen: Advanced Trade pages by whole seconds,
                # and more than a page of trades share the oldest one. What lies below
                # cannot be reached: not proven.
                log.warning(
                    "%s: more than %d trades in the second at %.0f; REST cannot page past "
                    "them, so the trades before are not all known",
                    product,
                    PAGE_LIMIT,
                    cursor_time or 0.0,
                )
                return _oldest_first(found), False
            found.update((t.trade_id, t) for t in new)
            oldest = min(new, key=lambda t: t.numeric_id)
            reached_id = to_id is not None and oldest.numeric_id <= to_id
            if reached_id or (to_time_s is not None and oldest.time_s < to_time_s):
                return _oldest_first(found), True
            if dialect == "exchange":
                cursor_id = oldest.numeric_id
            else:
                cursor_time = min(t.time_s for t in new)
        return _oldest_first(found), False


def _oldest_first(found: dict[str, Trade]) -> list[Trade]:
    return sorted(found.values(), key=lambda t: t.numeric_id)
