"""Trades to bars: exchange-time buckets, grace, empty intervals, late trades, exact prices."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ovcast.market.aggregator import Bar, BarAggregator


def starts(bars):
    return [(b.start_s, b.filled) for b in bars]


def test_bars_close_when_time_provably_moves_on():
    agg = BarAggregator(interval_s=60, grace_s=3)
    assert agg.add_trade(10.5, D("100.10"), D("0.5")) == []
    assert agg.add_trade(59.999, D("101.00"), D("0.25")) == []
    assert agg.add_trade(30.0, D("99.90"), D("1")) == []  # out of order inside the open bar: fine
    closed = agg.add_trade(70.0, D("100.50"), D("2"))
    assert starts(closed) == [(0, False)]
    bar = closed[0]
    assert (bar.open, bar.high, bar.low, bar.close) == (
        D("100.10"),
        D("101.00"),
        D("99.90"),
        D("99.90"),
    )
    assert bar.volume == D("1.75") and bar.trades == 3  # exact: no float rounding


def test_empty_intervals_are_filled_flat_and_marked():
    agg = BarAggregator(interval_s=60, grace_s=3)
    agg.add_trade(61.0, D("100"), D("1"))
    closed = agg.add_trade(250.0, D("105"), D("1"))
    assert starts(closed) == [(60, False), (120, True), (180, True)]
    assert all(b.close == D("100") and b.volume == 0 for b in closed[1:])


def test_grace_period_and_clock_advance():
    agg = BarAggregator(interval_s=60, grace_s=3)
    agg.add_trade(10.0, D("1"), D("1"))
    assert agg.advance(62.9) == []  # ended at 60, grace until 63
    assert agg.add_trade(59.0, D("2"), D("1")) == []  # a late trade within grace still counts
    assert starts(agg.advance(63.0)) == [(0, False)]
    assert agg.advance(63.5) == []
    assert starts(agg.advance(185.0)) == [(60, True), (120, True)]  # silence: flat bars, in order


def test_late_trades_are_counted_not_applied():
    agg = BarAggregator(interval_s=60, grace_s=0)
    agg.add_trade(10.0, D("1"), D("1"))
    closed = agg.add_trade(70.0, D("2"), D("1"))
    assert agg.add_trade(20.0, D("9"), D("9")) == []
    assert agg.late_trades == 1 and closed[0].high == D("1")


def test_seed_continues_from_a_backfilled_bar_without_a_seam():
    agg = BarAggregator(interval_s=60)
    agg.seed(Bar(120, D("5"), D("6"), D("4"), D("5.5"), D("3")))
    assert agg.add_trade(150.0, D("9"), D("1")) == [] and agg.late_trades == 1  # inside the seed
    closed = agg.add_trade(310.0, D("7"), D("1"))
    assert starts(closed) == [(180, True), (240, True)]
    assert closed[0].close == D("5.5")


def test_invalid_settings():
    with pytest.raises(ValueError):
        BarAggregator(interval_s=0)
