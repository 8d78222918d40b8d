"""Per-product trade-id bookkeeping: repeats dropped, holes found, poison refused.

    tracker = TradeTracker()
    tracker.seed("BTC-USD", 1000, time_s)          # from the recording or a REST fetch
    reason = tracker.implausible(trade, now_s)      # a jump no market can make: reject
    new, gap = tracker.accept(trade)               # gap: ids (first, last) never seen

Coinbase trade ids are consecutive per product (Exchange numbers them; Advanced Trade
sends the same numbers as strings), so a jump is a lost trade and an id at or below the
highest seen is a repeat (``last_match`` and snapshots repeat trades on every resubscribe),
unless it falls in a hole reported earlier (a late trade, or the REST repair of the hole).
Holes are kept as id ranges, so a long outage costs a few ranges, not a set of every id.

Poison: an id further ahead than ``max_trades_per_s`` times the exchange seconds since the
last trade (plus ``slack``) would make every later real trade look like a repeat, so it is
refused, as is a heartbeat ``last_trade_id`` that far ahead.

Unseeded (no last id known: start-up could fetch no REST trades and there is no
recording), one message is not trusted alone: trades are held (``hold``) until a second
message agrees, i.e. another trade id or an Exchange heartbeat ``last_trade_id``
(``vouch``) within ``slack`` of it. Then the agreeing trades are admitted in id order and
held trades far from them are refused, so a single bogus first id cannot make every real
trade after it a "repeat".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .coinbase import Heartbeat, Trade

MAX_TRADES_PER_S = 1000.0  # BTC-USD peaks are a few hundred per second
ID_SLACK = 10_000
MAX_HELD = 1_000  # unseeded trades waiting for a second opinion


@dataclass
class _Product:
    last_id: int | None = None
    last_time_s: float | None = None
    holes: list[list[int]] = field(default_factory=list)  # [first, last] ranges, ascending
    held: list[Trade] = field(default_factory=list)  # unseeded: waiting for agreement
    vouched: list[int] = field(default_factory=list)  # unseeded: heartbeat last_trade_ids

    def fill(self, trade_id: int) -> bool:
        """Remove ``trade_id`` from the holes; False if it was in none."""
        for k, (lo, hi) in enumerate(self.holes):
            if lo <= trade_id <= hi:
                parts = [[lo, trade_id - 1], [trade_id + 1, hi]]
                self.holes[k : k + 1] = [p for p in parts if p[0] <= p[1]]
                return True
        return False


@dataclass
class TradeTracker:
    max_trades_per_s: float = MAX_TRADES_PER_S
    slack: int = ID_SLACK
    duplicates: int = 0
    _products: dict[str, _Product] = field(default_factory=dict)

    def _state(self, product_id: str) -> _Product:
        return self._products.setdefault(product_id, _Product())

    def seed(self, product_id: str, last_id: int, time_s: float) -> None:
        """Continue after a known trade (the recording's last, or a REST fetch's newest)."""
        state = self._state(product_id)
        if state.last_id is None or last_id > state.last_id:
            state.last_id, state.last_time_s = last_id, time_s

    def seeded(self, product_id: str) -> bool:
        return self._state(product_id).last_id is not None

    def last_id(self, product_id: str) -> int | None:
        return self._state(product_id).last_id

    def held(self) -> int:
        """Trades waiting for a second opinion, all products."""
        return sum(len(state.held) for state in self._products.values())

    def holes(self, product_id: str) -> list[tuple[int, int]]:
        return [(lo, hi) for lo, hi in self._state(product_id).holes]

    # -- unseeded: a second opinion ------------------------------------------------------------
    def hold(self, trade: Trade) -> tuple[list[Trade], list[Trade]]:
        """Keep a trade of an unseeded product until another message agrees with its id.
        Returns (trades now admitted, oldest first: pass each to ``accept``; trades refused:
        ids far from the agreeing ones, or held too long)."""
        state = self._state(trade.product_id)
        state.held.append(trade)
        refused = []
        if len(state.held) > MAX_HELD:
            refused.append(state.held.pop(0))
        admitted, outliers = self._settle(state)
        return admitted, refused + outliers

    def vouch(self, product_id: str, last_trade_id: int, time_s: float | None) -> tuple[
        list[Trade], list[Trade]
    ]:  # fmt: skip
        """An Exchange heartbeat's ``last_trade_id`` for an unseeded product: evidence (a
        second message agreeing seeds the tracker). Returns as ``hold`` does."""
        state = self._state(product_id)
        state.vouched = [*state.vouched[-9:], last_trade_id]
        return self._settle(state, time_s)

    def _settle(
        self, state: _Product, time_s: float | None = None
    ) -> tuple[list[Trade], list[Trade]]:
        ids = [t.numeric_id for t in state.held] + state.vouched
        support = [sum(abs(i - c) <= self.slack for i in ids) for c in ids]
        if max(support, default=0) < 2:
            return [], []
        anchor = ids[support.index(max(support))]
        agreeing = [i for i in ids if abs(i - anchor) <= self.slack]
        admitted = sorted(
            (t for t in state.held if abs(t.numeric_id - anchor) <= self.slack),
            key=lambda t: t.numeric_id,
        )
        refused = [t for t in state.held if abs(t.numeric_id - anchor) > self.slack]
        state.held, state.vouched = [], []
        state.last_id = admitted[0].numeric_id - 1 if admitted else min(agreeing)
        state.last_time_s = admitted[0].time_s if admitted else time_s
        return admitted, refused

    # -- seeded ------------------------------------------------------------------------------
    def _implausible_id(self, product_id: str, trade_id: int, now_s: float) -> str | None:
        state = self._state(product_id)
        if state.last_id is None or state.last_time_s is None:
            return None
        allowed = self.slack + self.max_trades_per_s * max(0.0, now_s - state.last_time_s)
        if trade_id - state.last_id > allowed:
            return (
                f"trade id {trade_id} is {trade_id - state.last_id} ahead of {state.last_id}, "
                f"more than {allowed:.0f} possible in {max(0.0, now_s - state.last_time_s):.0f} s"
            )
        return None

    def implausible(self, trade: Trade, now_s: float) -> str | None:
        """Why this trade's id cannot be real (None if it can)."""
        return self._implausible_id(trade.product_id, trade.numeric_id, now_s)

    def implausible_heartbeat(self, heartbeat: Heartbeat, now_s: float) -> str | None:
        if heartbeat.product_id is None or heartbeat.last_trade_id is None:
            return None
        return self._implausible_id(heartbeat.product_id, heartbeat.last_trade_id, now_s)

    def accept(self, trade: Trade) -> tuple[bool, tuple[int, int] | None]:
        """(is new, the id range [first, last] this trade proves missing, or None)."""
        state = self._state(trade.product_id)
        trade_id = trade.numeric_id
        last = state.last_id
        if last is not None and trade_id <= last:
            if state.fill(trade_id):
                return True, None
            self.duplicates += 1
            return False, None
        state.last_id, state.last_time_s = trade_id, trade.time_s
        if last is not None and trade_id > last + 1:
            gap = (last + 1, trade_id - 1)
            state.holes.append([gap[0], gap[1]])
            return True, gap
        return True, None

    def heartbeat_gap(self, heartbeat: Heartbeat) -> tuple[int, int] | None:
        """Trades the heartbeat says happened but we never saw (Exchange only)."""
        if heartbeat.product_id is None or heartbeat.last_trade_id is None:
            return None
        state = self._state(heartbeat.product_id)
        if state.last_id is None or heartbeat.last_trade_id <= state.last_id:
            return None
        gap = (state.last_id + 1, heartbeat.last_trade_id)
        state.last_id = heartbeat.last_trade_id
        if heartbeat.time_s is not None:
            state.last_time_s = heartbeat.time_s
        state.holes.append([gap[0], gap[1]])
        return gap

    def still_missing(self, product_id: str, first: int, last: int) -> int:
        """How many ids of [first, last] are still in a hole."""
        return sum(
            max(0, min(hi, last) - max(lo, first) + 1) for lo, hi in self._state(product_id).holes
        )
