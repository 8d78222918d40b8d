"""Start-up, per product: history for the window, and the open minute made whole.

    resumed = await resume_product("BTC-USD", recording, rest, settings, now_s=clock.now())

No seam and no loss, from a fresh start or from an existing recording:

1. Closed bars already recorded are kept. Every bar from the last recorded one (however
   long the outage) or, on a fresh start, from far enough back for the window and the
   indicators' warm-up, up to the open minute, comes from REST candles (newest-first pages
   of <= 300, the open bucket dropped; quiet minutes, which have no row, flat at the
   previous close, those right after the last recorded bar included). Where candles cannot
   be had (REST down, no Exchange REST URL) the outage's bars are still recorded, flat and
   ``partial``: the grid never has a hole.
2. Trades are then fetched over REST from the newest back past ``resume_from``: the first
   bar not yet recorded (after a crash or a stop, if at most ``max_resume_s`` ago) or the
   open minute (a fresh start, or a long outage). Reaching a trade older than that proves
   every trade since is known; together with the trades the recording already holds they
   rebuild the unrecorded closed bars (replacing their candles) and the open bar, so the
   first live bar is whole.
3. Where that cannot be proven (REST down after retries, the page budget spent, Advanced
   Trade's window too short), the oldest bar built from trades is marked ``partial``; if no
   trade came back at all, the open bar is.
4. A fetched trade the recording lacks, in a bar it already holds (read from the socket
   too late before a stop or crash), makes that recorded bar ``partial``.
5. The trade tracker continues from the newest trade known (REST or recording), so the
   gap between this fetch and the subscription, or an outage REST could not cover, is seen
   and repaired like any other hole. A recorded id far above REST's newest (recorded
   before ids were checked) is not trusted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import DataError
from ..market.aggregator import Bar, BarAggregator
from ..market.coinbase import Trade, apply_order
from ..market.recording import Recording
from ..market.rest import CoinbaseRest, CoinbaseRestError
from ..market.tracker import ID_SLACK

log = logging.getLogger(__name__)


@dataclass
class ResumeSettings:
    dialect: str = "exchange"
    interval_s: int = 60
    grace_s: float = 3.0
    need_bars: int = 662  # the window plus indicator warm-up
    max_resume_s: int = 3600  # a longer outage is bridged with candles, not trade by trade
    max_pages: int = 20  # REST trade pages at start-up (1000 trades each)


@dataclass
class Resumed:
    history: list[Bar]  # closed bars, oldest first: the stream warms up on these
    new_bars: list[Bar]  # closed bars not yet in the recording
    new_trades: list[Trade]  # REST trades not yet in the recording (repeats are ignored)
    aggregator: BarAggregator  # positioned after the history, holding the open bar
    last_trade: Trade | None  # where the trade tracker continues
    complete: bool  # every trade of the open minute is known
    late_starts: set[int] = field(default_factory=set)  # recorded bars that lack a trade
    notes: list[str] = field(default_factory=list)


async def resume_product(
    product: str,
    recording: Recording,
    rest: CoinbaseRest | None,
    settings: ResumeSettings,
    *,
    now_s: float,
) -> Resumed:
    interval = settings.interval_s
    open_minute = int(now_s // interval) * interval
    recorded = recording.bars(product)
    resume_from = open_minute
    if recorded:
        after = recorded[-1].start_s + interval
        if after > open_minute or open_minute - after <= settings.max_resume_s:
            resume_from = after
            open_minute = max(open_minute, after)
    if recorded:
        candle_from = recorded[-1].start_s + interval  # bridge the whole outage
    else:
        candle_from = open_minute - settings.need_bars * interval

    candles: list[Bar] = []
    bridged = candle_from >= open_minute
    notes: list[str] = []
    if rest is not None and rest.exchange_url and not bridged:
        if recorded and open_minute - candle_from > settings.max_resume_s:
            log.info(
                "%s: bridging %d minutes since the last recorded bar with REST candles",
                product,
                (open_minute - candle_from) // 60,
            )
        try:
            candles = await rest.candles(
                product,
                candle_from,
                open_minute,
                interval,
                now_s,
                previous=recorded[-1] if recorded else None,
            )
            bridged = True
        except CoinbaseRestError as exc:
            if exc.refused or not recorded:
                raise  # an unknown product, or nothing to start from
            log.warning("%s: %s; continuing from the recording", product, exc)
    if not bridged:
        notes.append(
            f"no REST candles for the bars since {candle_from}: they are recorded flat and "
            "partial (unknown, not quiet)"
        )

    fetched: list[Trade] = []
    proven = False
    if rest is not None:
        try:
            fetched, proven = await rest.trades_back(
                product, settings.dialect, to_time_s=resume_from, max_pages=settings.max_pages
            )
        except CoinbaseRestError as exc:
            log.warning("%s: trades for the open minute unavailable: %s", product, exc)
    if proven:
        trades_from = resume_from
    else:
        oldest = min((t.time_s for t in fetched), default=None)
        trades_from = open_minute if oldest is None else min(open_minute, _bucket(oldest, interval))
        trades_from = max(trades_from, resume_from)
        notes.append(
            f"trades since {trades_from} could not be proven complete over REST: "
            f"the bar at {trades_from} is marked partial"
        )

    from_candles = [b for b in candles if b.start_s < trades_from]
    aggregator = BarAggregator(interval, settings.grace_s)
    if recorded or from_candles:
        aggregator.seed((recorded + from_candles)[-1])
    if not proven:
        aggregator.mark_partial(trades_from)
    if not bridged:
        for start in range(candle_from, trades_from, interval):
            aggregator.mark_partial(start)
    known = {t.trade_id: t for t in recording.trades(product, since_s=trades_from)}
    known.update((t.trade_id, t) for t in fetched if t.time_s >= trades_from)
    rebuilt: list[Bar] = []
    for trade in apply_order(list(known.values())):
        rebuilt += aggregator.add_trade(trade.time_s, trade.price, trade.size, trade.numeric_id)
    rebuilt += aggregator.close_until(open_minute)
    new_bars = from_candles + rebuilt
    history = recorded + new_bars
    recorded_starts = {b.start_s for b in recorded}
    late_starts = {
        _bucket(t.time_s, interval)
        for t in fetched
        if t.time_s < trades_from
        and _bucket(t.time_s, interval) in recorded_starts
        and not recording.has_trade(product, t.trade_id)
    }
    for bar in recorded:
        bar.partial = bar.partial or bar.start_s in late_starts
    if not history and aggregator.open_bar is None:
        raise DataError(f"{product}: no history (no recording and no REST candles); cannot warm up")

    candidates = list(fetched)
    recorded_last = recording.last_trade(product)
    rest_last = max((t.numeric_id for t in fetched), default=None)
    if recorded_last is not None and rest_last is not None:
        if recorded_last.numeric_id > rest_last + ID_SLACK:
            notes.append(
                f"the recording's highest trade id {recorded_last.trade_id} is far above "
                f"REST's newest ({rest_last}); continuing from REST's"
            )
            recorded_last = None
    if recorded_last is not None:
        candidates.append(recorded_last)
    last_trade = max(candidates, key=lambda t: t.numeric_id, default=None)
    return Resumed(
        history=history,
        new_bars=new_bars,
        new_trades=fetched,
        aggregator=aggregator,
        last_trade=last_trade,
        complete=proven,
        late_starts=late_starts,
        notes=notes,
    )


def _bucket(time_s: float, interval_s: int) -> int:
    return int(time_s // interval_s) * interval_s
