"""Time for the live pipeline: the exchange's clock, estimated; the wall clock, injected.

    clock = ExchangeClock(wall=time.time)       # tests pass ManualClock().time instead
    clock.set(server_epoch)                     # REST GET /time at start-up
    clock.observe(message_time_s)               # every accepted trade and heartbeat
    clock.now()                                 # latest exchange time + wall time since

Bars are cut on exchange time, never on the local clock (which may be off by seconds or
minutes). Between messages the estimate runs on at wall-clock speed; a message never sets
it back (messages arrive late, not early). ``plausible`` bounds what a message may claim:
a trade stamped an hour ahead would close sixty bars at once. Until the clock is synced
(REST ``/time`` unavailable), the local clock is only a guess: the first message sets the
clock either way and is not bounded, so a local clock that is minutes off neither rejects
every trade nor closes bars early.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ManualClock:
    """A wall clock that moves only when told: a minute of pipeline life in a millisecond."""

    def __init__(self, start_s: float = 1_700_000_000.0) -> None:
        self.now_s = start_s

    def time(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


class ExchangeClock:
    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self._anchor_exchange = wall()
        self._anchor_wall = self._anchor_exchange
        self.synced = False  # set() or observe() has seen the exchange's own clock

    def now(self) -> float:
        return self._anchor_exchange + (self.wall() - self._anchor_wall)

    def set(self, exchange_now_s: float) -> None:
        """The exchange said what time it is (REST ``/time``): trust it over the estimate."""
        self._anchor_exchange, self._anchor_wall = exchange_now_s, self.wall()
        self.synced = True

    def observe(self, exchange_time_s: float) -> None:
        """A message stamped ``exchange_time_s`` arrived: the exchange is at least there."""
        if exchange_time_s > self.now() or not self.synced:
            self._anchor_exchange, self._anchor_wall = exchange_time_s, self.wall()
        self.synced = True

    def plausible(self, exchange_time_s: float, max_ahead_s: float) -> str | None:
        """Why a message stamped ``exchange_time_s`` cannot be trusted (None if it can)."""
        if not self.synced:
            return None
        ahead = exchange_time_s - self.now()
        if ahead > max_ahead_s:
            return f"stamped {ahead:.0f} s ahead of the exchange clock (limit {max_ahead_s:g} s)"
        return None
