"""Time for the live pipeline: the exchange's clock, estimated; the local clocks, injected.

    clock = ExchangeClock()                     # tests: ExchangeClock(ManualClock().time)
    clock.set(server_epoch)                     # REST GET /time at start-up
    clock.observe(message_time_s)               # every message that carries the exchange time
    clock.now()                                 # the estimate + time elapsed since

Bars are cut on exchange time, never on the local clock (which may be off by seconds or
minutes). The estimate is an offset from a monotonic clock (``time.monotonic``): elapsed
time is measured on it, so an NTP step of the host clock moves nothing. The wall clock is
read once, as the first guess before anything better is known.

Messages arrive late (by their latency), so each says the exchange is at least where it is
stamped; but one message is not trusted alone. The clock follows what recent messages
agree on: the median of the last ``SAMPLES`` offsets (``WINDOW_S`` at most), when more than
half of them lie within ``AGREE_S`` of it; it then moves to the newest-stamped of those
(the least delayed). So a message far ahead, or a sequence of them each a little further
ahead than the last (a ratchet), moves nothing, while a REST ``/time`` that disagrees with
the socket is overruled after two messages. The clock goes back only when the messages
agree it is more than ``BACK_S`` ahead (a wrong REST ``/time``, a stalled reader), and says
so. Until the clock is synced (no REST ``/time``) the first message sets it, either way,
and ``plausible`` bounds nothing.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

SAMPLES = 31
WINDOW_S = 60.0
AGREE_S = 5.0
BACK_S = 10.0


class ManualClock:
    """A clock that moves only when told: a minute of pipeline life in a millisecond."""

    def __init__(self, start_s: float = 1_700_000_000.0) -> None:
        self.now_s = start_s

    def time(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


class ExchangeClock:
    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        elapsed: Callable[[], float] | None = None,
    ) -> None:
        """``elapsed`` (default ``time.monotonic``; an injected ``wall`` serves as both)
        measures time passing; ``wall`` gives the first guess of the exchange time."""
        self.elapsed = elapsed or (time.monotonic if wall is time.time else wall)
        self._offset = wall() - self.elapsed()  # exchange time = elapsed() + offset
        self._samples: deque[tuple[float, float]] = deque(maxlen=SAMPLES)  # (elapsed, offset)
        self.synced = False  # set() or observe() has seen the exchange's own clock
        self.set_back = 0  # times the messages agreed the clock was ahead

    def now(self) -> float:
        return self.elapsed() + self._offset

    def set(self, exchange_now_s: float) -> None:
        """The exchange said what time it is (REST ``/time``): the estimate until messages
        agree otherwise."""
        at = self.elapsed()
        self._offset = exchange_now_s - at
        self._samples.clear()
        self._samples.append((at, self._offset))
        self.synced = True

    def observe(self, exchange_time_s: float) -> None:
        """A message stamped ``exchange_time_s`` arrived."""
        at = self.elapsed()
        sample = exchange_time_s - at
        self._samples.append((at, sample))
        if not self.synced:
            self._offset, self.synced = sample, True
            return
        while at - self._samples[0][0] > WINDOW_S:
            self._samples.popleft()
        agreed = self._agreed()
        if agreed is None:
            return
        if agreed > self._offset:
            self._offset = agreed
        elif agreed < self._offset - BACK_S:
            log.warning(
                "the exchange clock was %.1f s ahead of what the feed's messages agree on; "
                "set back (bars it closed early are marked partial by their late trades)",
                self._offset - agreed,
            )
            self._offset = agreed
            self.set_back += 1

    def _agreed(self) -> float | None:
        """The offset more than half the recent samples agree on (None without a majority)."""
        offsets = [offset for _, offset in self._samples]
        median = statistics.median_low(offsets)
        agreeing = [o for o in offsets if abs(o - median) <= AGREE_S]
        return max(agreeing) if 2 * len(agreeing) > len(offsets) else None

    def plausible(self, exchange_time_s: float, max_ahead_s: float) -> str | None:
        """Why a message stamped ``exchange_time_s`` cannot be trusted (None if it can)."""
        if not self.synced:
            return None
        ahead = exchange_time_s - self.now()
        if ahead > max_ahead_s:
            return f"stamped {ahead:.0f} s ahead of the exchange clock (limit {max_ahead_s:g} s)"
        return None
