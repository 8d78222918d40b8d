"""The forecast scorecard's arithmetic, against an example worked by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ovcast.pipeline.scorecard import (
    Scorecard,
    format_table,
    horizon_buckets,
    meta_key,
)


def worked_example() -> Scorecard:
    """Minute bars, horizon 3. Each forecast is (model path; window closes -> drift path):

    F0 at t=0,   close 100: model 101, 100.5, 103;  closes 96, 98, 100 -> drift 102, 104, 106
    F1 at t=60,  close 101: model 100, 102, 104;    closes 98, 100, 101 -> drift 102.5, 104, 105.5
    F2 at t=240, close 106: model 107, 105, 106;    closes 100, 103, 106 -> drift 109, 112, 115

    Bars: 60 -> 101, 120 -> 99, 180 -> 250 (partial: never scored), 240 -> 106, 300 -> 106.

    pair       actual  model err  random walk err  drift err  moved  model call  drift call
    F0 step 1  101     0          1                1          up     up (hit)    up (hit)
    F0 step 2   99     1.5        1                5          down   up (miss)   up (miss)
    F1 step 1   99     1          2                3.5        down   down (hit)  up (miss)
    F0 step 3, F1 step 2: the partial bar at 180, skipped
    F1 step 3  106     2          5                0.5        up     up (hit)    up (hit)
    F2 step 1  106     1          0                3          flat: no call for anyone
    """
    card = Scorecard("BTC-USD", interval_s=60)
    card.add_bar(0, 100.0)
    card.add_forecast(0, np.array([101, 100.5, 103]), np.array([96, 98, 100]), model="m")
    card.add_bar(60, 101.0)
    card.add_forecast(60, np.array([100, 102, 104]), np.array([98, 100, 101]), model="m")
    card.add_bar(120, 99.0)
    card.add_bar(180, 250.0, partial=True)
    card.add_bar(240, 106.0)
    card.add_forecast(240, np.array([107, 105, 106]), np.array([100, 103, 106]), model="m")
    card.add_bar(300, 106.0)  # a filled minute (no trades, flat): a real price, scored
    return card


def test_the_worked_example_bucket_by_bucket():
    summary = worked_example().summary()
    assert summary["forecasts"] == 3 and summary["pending"] == 1  # F2 has steps 2, 3 to go
    assert summary["skipped_partial"] == 2
    near, far = summary["buckets"]
    assert (near["steps"], near["scored"], far["steps"], far["scored"]) == ("1", 3, "2-3", 2)
    assert near["mae"] == pytest.approx({"model": 2 / 3, "random_walk": 1.0, "drift": 2.5})
    assert far["mae"] == pytest.approx({"model": 1.75, "random_walk": 3.0, "drift": 2.75})
    assert near["hit_rate"] == {"model": 1.0, "random_walk": None, "drift": 0.5}
    assert far["hit_rate"] == {"model": 0.5, "random_walk": None, "drift": 0.5}
    assert near["calls"] == {"model": 2, "random_walk": 0, "drift": 2}
    whole = summary["all"]
    assert whole["scored"] == 5
    assert whole["mae"] == pytest.approx({"model": 1.1, "random_walk": 1.8, "drift": 2.6})
    assert whole["rmse"]["model"] == pytest.approx(math.sqrt((0 + 1 + 2.25 + 4 + 1) / 5))
    assert whole["rmse"]["random_walk"] == pytest.approx(math.sqrt((1 + 1 + 4 + 25 + 0) / 5))
    assert whole["hit_rate"] == {"model": 0.75, "random_walk": None, "drift": 0.5}
    assert whole["model_vs_random_walk"] == pytest.approx(1.1 / 1.8, abs=1e-4)
    assert summary["by_step"]["scored"] == [3, 1, 1]
    assert summary["by_step"]["mae"]["random_walk"] == pytest.approx([1.0, 1.0, 5.0])
    assert summary["verdict"].startswith("the model beats the random walk overall (MAE 0.61x")


def one_step(actual: float, *forecast: float, origin: float = 100.0) -> Scorecard:
    """A card with one forecast from ``origin`` (a flat window) and its next bar."""
    card = Scorecard("X", interval_s=60)
    card.add_bar(0, origin)
    card.add_forecast(0, np.array(forecast), np.array([origin, origin]), model="m")
    card.add_bar(60, actual)
    return card


FEW = " (so far: {} scored, too few to judge)"


def test_the_verdict_says_who_won_plainly_and_a_tie_is_a_tie():
    assert one_step(101.0, 103.0).summary()["verdict"] == (
        "the random walk beats the model overall (model MAE 2.00x the random walk's)"
        + FEW.format("1 step")
    )
    assert one_step(101.0, 101.5).summary()["verdict"] == (
        "the model beats the random walk overall (MAE 0.50x the random walk's)"
        + FEW.format("1 step")
    )
    tie = one_step(101.0, 101.995).summary()  # model err 0.995 vs 1: within 1%
    assert tie["all"]["model_vs_random_walk"] == pytest.approx(0.995)
    assert tie["verdict"].startswith("the model is within 1% of (no better than) the random walk")
    assert "did not move" in one_step(100.0, 100.5).summary()["verdict"]
    card = one_step(101.0, 101.0, 110.0)  # step 1 exact, step 2 far off
    card.add_bar(120, 100.0)
    assert card.summary()["verdict"] == (
        "the random walk beats the model overall (model MAE 10.00x the random walk's); the "
        "model is ahead at steps 1" + FEW.format("2 steps")
    )
    many = Scorecard("X", interval_s=60)  # enough steps: no caveat
    many.add_bar(0, 100.0)
    for k in range(1, 101):
        many.add_forecast(60 * (k - 1), np.array([100.0 + k]), np.array([100.0, 100.0]), model="m")
        many.add_bar(60 * k, 100.0 + k)  # every forecast exact, the random walk off by k
    assert many.summary()["verdict"] == (
        "the model beats the random walk overall (MAE 0.00x the random walk's)"
    )


def test_buckets_follow_the_horizon():
    assert horizon_buckets(96) == [(1, 1), (2, 5), (6, 15), (16, 48), (49, 96)]
    assert horizon_buckets(16) == [(1, 1), (2, 5), (6, 15), (16, 16)]
    assert horizon_buckets(3) == [(1, 1), (2, 3)]
    assert horizon_buckets(192)[-2:] == [(49, 96), (97, 192)]


def test_a_hot_swap_keeps_each_models_forecasts_on_its_own_card():
    card = Scorecard("BTC-USD", interval_s=60)
    card.add_bar(0, 100.0)
    card.add_forecast(0, np.array([101.0, 102.0]), np.array([100.0, 100.0]), model="old")
    card.add_bar(60, 101.0)  # old: step 1 exact
    card.add_forecast(60, np.array([105.0, 105.0]), np.array([100.0, 101.0]), model="new")
    card.add_bar(120, 103.0)  # old step 2: err 1; new step 1: err 2
    summary = card.summary()
    assert summary["model"] == "new" and summary["other_models"] == ["old"]
    assert summary["all"]["scored"] == 1 and summary["all"]["mae"]["model"] == 2.0
    stored = card.to_dict()
    assert stored["cards"]["old"]["steps"] == [1, 1]
    assert stored["cards"]["old"]["abs"][1][0] == 1.0


def test_stored_and_restored_it_goes_on_where_it_was():
    """A restart mid-horizon: F2 (steps 2 and 3 to go) is stored in flight and scored on."""
    card = worked_example()
    stored = json.loads(json.dumps(card.to_dict()))  # as the recording keeps it
    again = Scorecard.from_dict(stored, "BTC-USD", interval_s=60)
    assert again.summary() == card.summary() and again.summary()["pending"] == 1
    for each in (card, again):
        each.add_bar(360, 104.0)  # F2 step 2: model 105 (err 1), drift 112 (err 8)
        each.add_bar(420, 107.0)  # F2 step 3: model 106 (err 1), drift 115 (err 8)
    assert again.summary() == card.summary() and again.summary()["pending"] == 0
    assert again.summary()["all"]["scored"] == 7
    assert meta_key("BTC-USD") == "scorecard:BTC-USD"


def test_nan_and_inf_never_reach_the_sums():
    """A NaN or infinite forecast (or window) is counted, not scored; such a bar is skipped
    like a partial one; the card stays readable and restorable."""
    card = Scorecard("X")
    card.add_bar(0, 100.0)
    card.add_forecast(0, np.array([101.0, 102.0]), np.array([99.0, 100.0]), model="m")
    card.add_forecast(60, np.array([math.nan, 1.0]), np.array([99.0, 100.0]), model="m")
    card.add_forecast(120, np.array([1.0, 2.0]), np.array([math.inf, 100.0]), model="m")
    card.add_bar(60, math.inf)  # F0 step 1: not a price, skipped
    card.add_bar(120, 103.0)  # F0 step 2: model err 1, random walk 3, drift 1
    summary = card.summary()
    assert summary["unscorable"] == 2 and summary["skipped_partial"] == 1
    assert summary["all"]["mae"] == {"model": 1.0, "random_walk": 3.0, "drift": 1.0}
    again = Scorecard.from_dict(card.to_dict(), "X")
    assert again.summary() == summary
    assert "2 forecasts not scored (NaN or infinite)" in format_table(summary)


@pytest.mark.parametrize(
    "stored",
    [
        {"version": 1, "interval_s": 300, "model": "m", "cards": {}},  # another bar interval
        {"version": 99, "interval_s": 60, "model": "m", "cards": {}},
        {"version": 1, "interval_s": 60, "model": "m", "cards": {"m": {"horizon": 3}}},
        {"version": 1, "interval_s": 60, "model": "m", "cards": "nonsense"},
        "not a dict",
        {"version": 1, "interval_s": 60, "model": "m", "cards": {}, "pending": [{"model": "m"}]},
    ],
)
def test_a_stored_scorecard_that_cannot_be_used_starts_afresh(stored, caplog):
    card = Scorecard.from_dict(stored, "BTC-USD", interval_s=60)
    assert card.summary()["forecasts"] == 0 and card.to_dict()["cards"] == {}
    assert "starts afresh" in caplog.text


def test_damaged_sums_are_refused_not_shown():
    stored = worked_example().to_dict()
    stored["cards"]["m"]["abs"][0][0] = float("nan")
    assert Scorecard.from_dict(stored, "BTC-USD").to_dict()["cards"] == {}


def test_the_table_says_what_is_scored_and_who_won():
    table = format_table(worked_example().summary())
    lines = table.splitlines()
    assert lines[0] == (
        "BTC-USD, model m: 3 forecasts scored over 5 steps; MAE of the close in price "
        "(lower is better)"
    )
    assert lines[2].split() == ["1", "3", "0.6667", "1", "2.5", "0.67x", "100.0%", "50.0%"]
    assert lines[4].split()[:2] == ["all", "5"]
    assert "the model beats the random walk" in table and "(2 steps skipped)" in table
    assert format_table(Scorecard("X").summary()).startswith("X, model None: nothing scored")


def test_nothing_scored_reads_as_such():
    card = Scorecard("X")
    assert card.brief() == "scorecard: nothing scored yet"
    card.add_bar(0, 1.0)
    card.add_forecast(0, np.array([1.0, 2.0]), np.array([1.0]), model="m")  # a 1-bar window
    assert card.summary()["all"]["scored"] == 0
    card.add_bar(60, 1.5)
    assert card.brief() == "scorecard 1 forecast, 1 step: MAE 0.5 vs random walk 0.5 (1.00x)"
