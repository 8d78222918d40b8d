"""TinyTimeMixer (granite-tsfm): every published shape and option converts with parity, the
package describes its inputs, the Engine takes them, and a granite-tsfm preprocessor's
scaler travels with the package and forecasts what granite-tsfm's own pipeline forecasts.

Checkpoints are random, built with granite-tsfm's own TinyTimeMixerConfig and saved with
save_pretrained; d_model is tiny so each converts in a second or two.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

tsfm = pytest.importorskip(
    "tsfm_public", reason="granite-tsfm is not installed (make install installs it)"
)
torch = pytest.importorskip("torch")

from ovcast import Engine  # noqa: E402
from ovcast.convert import convert  # noqa: E402
from ovcast.errors import (  # noqa: E402
    ConversionError,
    InvalidInputError,
    ModelSourceError,
)
from ovcast.package import ModelPackage  # noqa: E402
from ovcast.parity import parity_windows  # noqa: E402

# Tiny but structurally the r2 model: decoder, 3 adaptive patching levels, 8 patches.
TINY = dict(d_model=16, decoder_d_model=8, num_layers=1, decoder_num_layers=1)
TOLERANCE = 1e-4
# Channel 0 forecast from its past, channel 2's known future and a frequency token.
EXOGENOUS_AND_TOKEN = dict(
    num_input_channels=3,
    resolution_prefix_tuning=True,
    frequency_token_vocab_size=10,
    prediction_channel_indices=[0],
    exogenous_channel_indices=[2],
    enable_forecast_channel_mixing=True,
)


def ttm_checkpoint(folder: Path, *, seed: int = 0, **overrides) -> Path:
    from ovcast.hf.configs import new_model

    torch.manual_seed(seed)
    new_model("ttm", **{**TINY, **overrides}).eval().save_pretrained(folder)
    return folder


def torch_forecast(folder: Path, past: np.ndarray, **inputs) -> np.ndarray:
    model = tsfm.TinyTimeMixerForPrediction.from_pretrained(folder).eval()
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}
    with torch.no_grad():
        return model(past_values=torch.from_numpy(past), **tensors).prediction_outputs.numpy()


def assert_parity(package: ModelPackage) -> None:
    figures = package.manifest.parity["fp32_vs_torch"]
    assert figures["max_abs_error"] <= TOLERANCE * max(1.0, figures["reference_peak"])


@pytest.mark.parametrize("context", [512, 1024, 1536])
@pytest.mark.parametrize("horizon", [96, 192, 336, 720])
def test_every_published_r2_shape_converts_with_parity(tmp_path, context, horizon):
    ckpt = ttm_checkpoint(
        tmp_path / "ckpt",
        context_length=context,
        prediction_length=horizon,
        num_input_channels=2,
        adaptive_patching_levels=1,
    )
    package = convert(ckpt, tmp_path / "pkg")
    assert_parity(package)
    m = package.manifest
    assert (m.family, m.architecture) == ("ttm", "TinyTimeMixerForPrediction")
    assert [(t.name, t.shape) for t in m.inputs] == [("past_values", [-1, context, 2])]
    assert m.outputs[0].shape == [-1, horizon, 2]
    assert m.versions["granite-tsfm"]
    window = parity_windows(context, 2, 3)
    np.testing.assert_allclose(
        Engine(package, warmup=False).predict(window), torch_forecast(ckpt, window), atol=1e-4
    )


def test_adaptive_patching_freq_token_input_channels_and_filter(tmp_path):
    """The r2 options at once: 3 adaptive patching levels, resolution prefix tuning (the
    frequency token an input), prediction_channel_indices and prediction_filter_length."""
    ckpt = ttm_checkpoint(
        tmp_path / "ckpt",
        num_input_channels=3,
        d_model=32,
        adaptive_patching_levels=3,
        resolution_prefix_tuning=True,
        frequency_token_vocab_size=10,
        prediction_channel_indices=[2, 0],
    )
    package = convert(ckpt, tmp_path / "pkg", prediction_filter_length=24)
    assert_parity(package)
    m = package.manifest
    assert [(t.name, t.shape, t.datatype) for t in m.inputs] == [
        ("past_values", [-1, 512, 3], "FP32"),
        ("freq_token", [-1], "INT64"),
    ]
    assert all(t.description for t in m.inputs + m.outputs)
    assert m.output_channels == [0, 2] and m.outputs[0].shape == [-1, 24, 2]
    assert m.frequency["vocab_size"] == 10 and m.frequency["mapping"]["h"] == 7

    engine = Engine(package)
    window = parity_windows(512, 3, 2)
    full = torch_forecast(ckpt, window, freq_token=np.array([7, 3]))  # horizon 96
    got = engine.predict(window, freq_token=[7, 3])
    np.testing.assert_allclose(got, full[:, :24], atol=1e-4)
    np.testing.assert_allclose(engine.predict(window[0], freq_token="h"), got[0], atol=1e-5)
    assert not np.allclose(engine.predict(window[0], freq_token=1), got[0], atol=1e-4)
    with pytest.raises(InvalidInputError, match="freq_token"):
        engine.predict(window[0])  # no default: the package was not given a preprocessor
    with pytest.raises(InvalidInputError, match=r"\[0, 10\)"):
        engine.predict(window[0], freq_token=10)
    with pytest.raises(InvalidInputError, match="unknown frequency"):
        engine.predict(window[0], freq_token="fortnight")
    with pytest.raises(InvalidInputError, match="unknown input"):
        engine.predict(window[0], freq_token=7, future_exogenous=np.zeros((24, 1)))


def test_frequency_token_fixed_at_conversion(tmp_path):
    ckpt = ttm_checkpoint(
        tmp_path / "ckpt",
        num_input_channels=2,
        resolution_prefix_tuning=True,
        frequency_token_vocab_size=10,
    )
    package = convert(ckpt, tmp_path / "pkg", freq_token="15min")
    assert_parity(package)
    assert [t.name for t in package.manifest.inputs] == ["past_values"]
    assert package.manifest.frequency["fixed"] == 5
    window = parity_windows(512, 2, 2)
    np.testing.assert_allclose(
        Engine(package).predict(window),
        torch_forecast(ckpt, window, freq_token=np.array([5, 5])),
        atol=1e-4,
    )
    plain = ttm_checkpoint(tmp_path / "plain", num_input_channels=2)
    with pytest.raises(ConversionError, match="no resolution prefix tuning"):
        convert(plain, tmp_path / "bad", freq_token=3)


def test_exogenous_channels_with_forecast_channel_mixing(tmp_path):
    """Future values of exogenous channels are an input; the forecast depends on them and
    equals the PyTorch model's given the same future values."""
    ckpt = ttm_checkpoint(
        tmp_path / "ckpt",
        num_input_channels=4,
        prediction_channel_indices=[0, 1],
        exogenous_channel_indices=[2, 3],
        enable_forecast_channel_mixing=True,
        fcm_use_mixer=True,
        fcm_context_length=2,
    )
    package = convert(ckpt, tmp_path / "pkg")
    assert_parity(package)
    m = package.manifest
    assert [(t.name, t.shape) for t in m.inputs] == [
        ("past_values", [-1, 512, 4]),
        ("future_exogenous", [-1, 96, 2]),
    ]
    assert m.exogenous_channels == [2, 3] and m.output_channels == [0, 1]
    engine = Engine(package)
    window = parity_windows(512, 4, 2)
    known = np.random.default_rng(1).standard_normal((2, 96, 2)).astype(np.float32)
    future = np.zeros((2, 96, 4), np.float32)
    future[..., 2:] = known
    got = engine.predict(window, future_exogenous=known)
    np.testing.assert_allclose(got, torch_forecast(ckpt, window, future_values=future), atol=1e-4)
    assert not np.allclose(got, engine.predict(window, future_exogenous=known + 1), atol=1e-3)
    with pytest.raises(InvalidInputError, match="needs the input 'future_exogenous'"):
        engine.predict(window)
    with pytest.raises(InvalidInputError, match=r"expected \['batch', 96, 2\]"):
        engine.predict(window, future_exogenous=known[:, :48])
    with pytest.raises(InvalidInputError, match="NaN"):
        engine.predict(window, future_exogenous=np.full((2, 96, 2), np.nan))
    many = engine.predict_many(window, future_exogenous=known)
    np.testing.assert_allclose(many, got, atol=1e-5)


def test_predict_cli_passes_future_values_and_frequency(tmp_path, capsys):
    from ovcast.cli import main

    ckpt = ttm_checkpoint(tmp_path / "ckpt", **EXOGENOUS_AND_TOKEN)
    package = convert(ckpt, tmp_path / "pkg", channel_names=["sales", "x", "promo"])
    window = parity_windows(512, 3, 1)[0]
    future = np.linspace(0, 1, 96)[:, None].astype(np.float32)
    np.savetxt(tmp_path / "w.csv", window, delimiter=",", header="sales,x,promo", comments="")
    np.savetxt(tmp_path / "f.csv", future, delimiter=",", header="Promo", comments="")  # by name
    args = ["predict", str(package.path), "--input", str(tmp_path / "w.csv")]
    assert main([*args, "--freq-token", "h", "--future", str(tmp_path / "f.csv")]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["channels"] == ["sales"]
    expected = Engine(package).predict(window, freq_token=7, future_exogenous=future)
    np.testing.assert_allclose(np.array(answer["predictions"]), expected, atol=1e-5)
    assert main([*args, "--freq-token", "h"]) == 1  # the future values are missing
    assert "needs the input 'future_exogenous'" in capsys.readouterr().err
    # A header that names another channel is not read by position as 'promo'.
    np.savetxt(tmp_path / "x.csv", future, delimiter=",", header="x", comments="")
    assert main([*args, "--freq-token", "h", "--future", str(tmp_path / "x.csv")]) == 1
    err = capsys.readouterr().err
    assert "not the exogenous channels ['promo']" in err and "Traceback" not in err
    # Without a header the columns are the exogenous channels in order.
    np.savetxt(tmp_path / "bare.csv", future, delimiter=",")
    assert main([*args, "--freq-token", "h", "--future", str(tmp_path / "bare.csv")]) == 0
    np.testing.assert_allclose(
        np.array(json.loads(capsys.readouterr().out)["predictions"]), expected, atol=1e-5
    )
    # --series-id picks a raw-input scaler: without --raw it is refused, not ignored.
    future_args = ["--freq-token", "h", "--future", str(tmp_path / "f.csv")]
    assert main([*args, *future_args, "--series-id", "north"]) == 1
    assert "--series-id applies to --raw input only" in capsys.readouterr().err


def test_forecast_frame_ignores_other_columns_and_takes_the_other_inputs(tmp_path):
    """forecast_frame picks the named channels (a text column is ignored, as documented),
    takes one id column by name and passes freq_token / future_exogenous on."""
    import pandas as pd

    from ovcast.errors import DataError, InvalidInputError

    ckpt = ttm_checkpoint(tmp_path / "ckpt", **EXOGENOUS_AND_TOKEN)
    engine = Engine(convert(ckpt, tmp_path / "pkg", channel_names=["sales", "x", "promo"]))
    window = parity_windows(512, 3, 1)[0]
    frame = pd.DataFrame(window, columns=["sales", "x", "promo"])
    frame.insert(0, "date", pd.date_range("2024-01-01", periods=512, freq="h"))
    frame["note"], frame["site"] = "text", "north"
    future = np.linspace(0, 1, 96)[:, None].astype(np.float32)
    inputs = dict(freq_token=[7], future_exogenous=future[None])  # one per series
    got = engine.forecast_frame(frame, id_columns="site", raw=False, **inputs)
    assert list(got.columns) == ["site", "date", "sales"] and len(got) == 96
    expected = engine.predict(window, freq_token=7, future_exogenous=future)
    np.testing.assert_allclose(got[["sales"]].to_numpy(), expected, atol=1e-5)
    with pytest.raises(InvalidInputError, match=r"the model takes 3 channels \['sales', 'x',"):
        engine.forecast_frame(frame.rename(columns={"promo": "p"}), raw=False, **inputs)
    with pytest.raises(DataError, match=r"id column\(s\) \['region'\]"):
        engine.forecast_frame(frame, id_columns="region", raw=False, **inputs)


def test_observed_mask_input_takes_missing_values(tmp_path):
    ckpt = ttm_checkpoint(tmp_path / "ckpt", num_input_channels=2)
    package = convert(ckpt, tmp_path / "pkg", observed_mask=True)
    assert_parity(package)
    assert [t.name for t in package.manifest.inputs] == ["past_values", "past_observed_mask"]
    engine = Engine(package)
    window = parity_windows(512, 2, 1)[0]
    holes = window.copy()
    holes[100:140, 1] = np.nan
    mask = np.isfinite(holes).astype(np.float32)
    expected = torch_forecast(
        ckpt, np.nan_to_num(holes)[None], past_observed_mask=mask[None].astype(bool)
    )[0]
    np.testing.assert_allclose(engine.predict(holes), expected, atol=1e-4)
    np.testing.assert_allclose(
        engine.predict(np.nan_to_num(holes), past_observed_mask=mask), expected, atol=1e-4
    )
    inf = window.copy()
    inf[3, 0] = np.inf
    with pytest.raises(InvalidInputError, match="inf"):
        engine.predict(inf)
    with pytest.raises(InvalidInputError, match="only 0 and 1"):
        engine.predict(window, past_observed_mask=np.full((512, 2), 0.5))
    # Nothing observed in a channel: refused, not a confident forecast of the training mean.
    blank = window.copy()
    blank[:, 1] = np.nan
    with pytest.raises(InvalidInputError, match=r"window 0 has no observed value in channel 1"):
        engine.predict(blank)
    with pytest.raises(InvalidInputError, match="no observed value in channel 0"):
        engine.predict(np.full((512, 2), np.nan))
    with pytest.raises(InvalidInputError, match=r"window 1 has no observed value"):
        engine.predict(
            np.stack([window, window]),
            past_observed_mask=np.stack([np.ones((512, 2)), np.zeros((512, 2))]),
        )


# --- granite-tsfm's TimeSeriesPreprocessor -------------------------------------------------


def _frame(seed: int, rows: int, ids: tuple[str, ...] = ()) -> pd.DataFrame:  # noqa: F821
    import pandas as pd

    rng = np.random.default_rng(seed)
    parts = []
    for k, series in enumerate(ids or ("",)):
        t = np.arange(rows)
        part = pd.DataFrame(
            {
                "date": pd.date_range("2024-01-01", periods=rows, freq="h"),
                "load": 50 + 10 * (k + 1) * np.sin(2 * np.pi * t / 24) + rng.normal(0, 2, rows),
                "temp": 15 + 5 * k + np.cumsum(rng.normal(0, 0.3, rows)),
                "price": 80 * (k + 1) + rng.normal(0, 7, rows),
            }
        )
        if ids:
            part.insert(0, "site", series)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _pipeline_forecast(folder: Path, tsp, frame, targets):
    from tsfm_public import TimeSeriesForecastingPipeline

    model = tsfm.TinyTimeMixerForPrediction.from_pretrained(folder).eval()
    pipe = TimeSeriesForecastingPipeline(
        model, feature_extractor=tsp, explode_forecasts=False, device="cpu"
    )
    out = pipe(frame)
    return out, {c: np.stack(out[f"{c}_prediction"].map(np.asarray).to_list()) for c in targets}


@pytest.mark.parametrize("scaler_type", ["standard", "minmax"])
def test_tsp_scaler_travels_and_forecast_equals_granite_tsfm_pipeline(tmp_path, scaler_type):
    """A checkpoint saved beside a fitted TimeSeriesPreprocessor: the package carries its
    scaler, channel names and frequency, and Engine.forecast on the raw window equals
    granite-tsfm's own inverse-scaled forecast of the same window."""
    from tsfm_public import TimeSeriesPreprocessor

    tsp = TimeSeriesPreprocessor(
        timestamp_column="date",
        target_columns=["load", "price"],
        conditional_columns=["temp"],
        context_length=512,
        prediction_length=96,
        scaling=True,
        scaler_type=scaler_type,
    )
    tsp.train(_frame(0, 2000))
    ckpt = ttm_checkpoint(
        tmp_path / "ckpt",
        num_input_channels=3,
        prediction_channel_indices=[0, 1],
        resolution_prefix_tuning=True,
        frequency_token_vocab_size=10,
    )
    tsp.save_pretrained(ckpt)
    package = convert(ckpt, tmp_path / "pkg")
    m = package.manifest
    assert m.channel_names == ["load", "price", "temp"]
    assert m.frequency["default"] == 7  # hourly, from the preprocessor's freq
    assert package.scaler is not None and package.scaler.names == ("load", "price", "temp")

    frame = _frame(1, 512)
    _, expected = _pipeline_forecast(ckpt, tsp, frame, ["load", "price"])
    got = Engine(package).forecast(frame[["load", "price", "temp"]].to_numpy())
    peak = max(1.0, float(np.abs(got).max()))
    np.testing.assert_allclose(got[:, 0], expected["load"][0], atol=1e-4 * peak)
    np.testing.assert_allclose(got[:, 1], expected["price"][0], atol=1e-4 * peak)


def test_daily_data_defaults_to_the_token_granite_tsfms_pipeline_feeds(tmp_path, caplog):
    """Daily data: granite-tsfm stores freq '1 days 00:00:00' and its pipeline feeds the
    token get_frequency_token gives for it ('oov', 0, with pandas 3), not 'D' (8). The
    package defaults to the pipeline's token (a model fine-tuned with granite-tsfm saw it),
    says so in the manifest and the log, and takes 'D' when a request names it."""
    import pandas as pd
    from tsfm_public import TimeSeriesPreprocessor

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "date": pd.date_range("2000-01-01", periods=700, freq="D"),
            "a": 100 + np.cumsum(rng.normal(0, 1, 700)),
            "b": rng.normal(0, 1, 700),
        }
    )
    tsp = TimeSeriesPreprocessor(
        timestamp_column="date",
        target_columns=["a", "b"],
        context_length=512,
        prediction_length=96,
        scaling=True,
    )
    tsp.train(frame)
    ckpt = ttm_checkpoint(
        tmp_path / "ckpt",
        num_input_channels=2,
        resolution_prefix_tuning=True,
        frequency_token_vocab_size=10,
    )
    tsp.save_pretrained(ckpt)
    package = convert(ckpt, tmp_path / "pkg")
    granite = tsp.get_frequency_token(tsp.freq)
    frequency = package.manifest.frequency
    assert frequency["default"] == granite
    assert "get_frequency_token" in frequency["default_from"]
    if granite != 8:  # pandas 3: the day is '24h', which the mapping does not name
        assert "'D' (token 8)" in frequency["default_from"]
        assert "--freq-token D" in caplog.text

    test = frame.iloc[-512:].reset_index(drop=True)
    _, expected = _pipeline_forecast(ckpt, tsp, test, ["a"])
    engine = Engine(package)
    raw = test[["a", "b"]].to_numpy()
    got = engine.forecast(raw)
    np.testing.assert_allclose(got[:, 0], expected["a"][0], atol=1e-4 * np.abs(got).max())
    named = engine.forecast(raw, freq_token="D")
    np.testing.assert_array_equal(named, engine.forecast(raw, freq_token=8))
    for spelling in ("1D", "24h", "1 days 00:00:00"):  # the same period, spelt otherwise
        np.testing.assert_array_equal(engine.forecast(raw, freq_token=spelling), named)
    with pytest.raises(InvalidInputError, match="unknown frequency '2h'"):
        engine.forecast(raw, freq_token="2h")
    with pytest.raises(ConversionError, match="not a frequency of the mapping"):
        convert(ckpt, tmp_path / "bad", freq_token="fortnight")


def test_per_series_scalers_chosen_by_id(tmp_path):
    """id_columns: one scaler per series in the package, picked by series id per request;
    each series' forecast equals granite-tsfm's pipeline forecast of that series."""
    from tsfm_public import TimeSeriesPreprocessor

    tsp = TimeSeriesPreprocessor(
        timestamp_column="date",
        id_columns=["site"],
        target_columns=["load"],
        observable_columns=["temp"],
        control_columns=["price"],
        context_length=512,
        prediction_length=96,
        scaling=True,
    )
    tsp.train(_frame(2, 1500, ids=("north", "south")))
    # Without the model's own per-window scaling, so which scaler is used shows in the
    # forecast (TTM's std scaling makes it equivariant to any per-channel affine scaler).
    ckpt = ttm_checkpoint(tmp_path / "ckpt", num_input_channels=3, scaling=False)
    tsp.save_pretrained(ckpt)
    package = convert(ckpt, tmp_path / "pkg")
    assert package.scaler is None
    scalers = package.series_scalers
    assert scalers is not None and scalers.id_columns == ("site",)
    assert set(scalers.scalers) == {("north",), ("south",)}

    frame = _frame(3, 512, ids=("north", "south"))
    out, expected = _pipeline_forecast(ckpt, tsp, frame, ["load"])
    engine = Engine(package)
    columns = ["load", "temp", "price"]
    windows = np.stack([frame[frame.site == s][columns].to_numpy() for s in ("north", "south")])
    batched = engine.forecast(windows, series_id=["north", "south"])
    for row, site in enumerate(out["site"]):
        one = engine.forecast(frame[frame.site == site][columns].to_numpy(), series_id=site)
        np.testing.assert_allclose(one[:, 0], expected["load"][row], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(batched[["north", "south"].index(site)], one, atol=1e-5)
    table = engine.forecast_frame(frame, id_columns=["site"])  # ids pick the scalers
    north = table[table.site == "north"]
    assert list(table.columns) == ["site", "date", "load", "temp", "price"] and len(north) == 96
    np.testing.assert_allclose(north[columns], batched[0], rtol=1e-5)
    same_window = engine.forecast(windows[0], series_id="south")
    assert not np.allclose(same_window, batched[0])  # the id picks the scaler
    with pytest.raises(InvalidInputError, match="give the series id"):
        engine.forecast(windows[0])
    with pytest.raises(InvalidInputError, match="no scaler for series"):
        engine.forecast(windows[0], series_id="east")
    with pytest.raises(InvalidInputError, match="2 series ids for 3 windows"):
        engine.forecast(np.concatenate([windows, windows[:1]]), series_id=["north", "south"])


@pytest.mark.parametrize(
    "indices, expected",
    [
        (dict(prediction_channel_indices=[0, 0]), r"\[0, 0\] names a channel more than once"),
        (dict(prediction_channel_indices=[-1]), r"\[-1\] outside the 3 input channels"),
        (
            dict(
                prediction_channel_indices=[0, 1],
                exogenous_channel_indices=[1, 2],
                enable_forecast_channel_mixing=True,
            ),
            r"channels \[1\] are both forecast",
        ),
    ],
    ids=["duplicate-target", "negative-target", "exogenous-target"],
)
def test_channel_indices_that_make_no_forecaster_are_refused(tmp_path, indices, expected):
    ckpt = ttm_checkpoint(tmp_path / "ckpt", num_input_channels=3, **indices)
    with pytest.raises(ConversionError, match=expected):
        convert(ckpt, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_preprocessor_for_other_window_lengths_is_warned_about(tmp_path, caplog):
    ckpt = ttm_checkpoint(tmp_path / "ckpt", num_input_channels=2)
    config = {"target_columns": ["a", "b"], "context_length": 1024, "prediction_length": 192}
    (tmp_path / "tsp.json").write_text(json.dumps({**config, "scaling": False}))
    with caplog.at_level("WARNING", logger="ovcast"):
        package = convert(ckpt, tmp_path / "pkg", preprocessor=tmp_path / "tsp.json")
    assert package.manifest.context_length == 512
    assert "preprocessor's context_length is 1024 but the model's is 512" in caplog.text
    assert "preprocessor's prediction_length is 192 but the model's is 96" in caplog.text


def test_series_ids_given_as_numpy_scalars_pick_their_scaler():
    """An id taken from an array or a pandas group key is a numpy scalar: np.int64(2) is
    series 2, as 2 and '2' are (it was refused as 'expected 1 value(s)')."""
    from ovcast.scaling import Scaler
    from ovcast.series_scalers import SeriesScalers

    two = Scaler(("standard",), np.array([5.0]), np.array([2.0]), ("load",))
    other = Scaler(("standard",), np.array([0.0]), np.array([1.0]), ("load",))
    scalers = SeriesScalers(("store",), {("2",): two, ("3",): other})
    for given in (2, "2", np.int64(2), np.float64(2.0), (np.int32(2),), {"store": np.int64(2)}):
        assert scalers.get(given) is two
    with pytest.raises(InvalidInputError, match="expected 1 value"):
        scalers.get(np.bool_(True))


def test_preprocessor_given_explicitly_and_what_is_refused(tmp_path):
    from tsfm_public import TimeSeriesPreprocessor

    ckpt = ttm_checkpoint(tmp_path / "ckpt", num_input_channels=2)
    frame = _frame(4, 800)

    def saved(name: str, **options) -> Path:
        tsp = TimeSeriesPreprocessor(
            timestamp_column="date", context_length=512, prediction_length=96, **options
        )
        tsp.train(frame)
        tsp.save_pretrained(tmp_path / name)
        return tmp_path / name

    good = saved("good", target_columns=["load", "temp"], scaling=True)
    package = convert(ckpt, tmp_path / "pkg", preprocessor=good)
    assert package.manifest.channel_names == ["load", "temp"]
    raw = frame[["load", "temp"]].to_numpy()[-512:]
    assert np.all(np.isfinite(Engine(package).forecast(raw)))

    power = saved("power", target_columns=["load", "temp"], scaling=True, scaler_type="power")
    with pytest.raises(ModelSourceError, match="scaler_type 'power'"):
        convert(ckpt, tmp_path / "p1", preprocessor=power)
    frame["kind"] = np.where(frame.index % 2 == 0, "a", "b")
    categorical = saved(
        "cat",
        target_columns=["load"],
        observable_columns=["kind"],
        categorical_columns=["kind"],
        scaling=True,
    )
    with pytest.raises(ModelSourceError, match="categorical columns"):
        convert(ckpt, tmp_path / "p2", preprocessor=categorical)
    mixing = ttm_checkpoint(
        tmp_path / "mix",
        num_input_channels=2,
        exogenous_channel_indices=[1],
        prediction_channel_indices=[0],
        enable_forecast_channel_mixing=True,
    )
    three = saved("three", target_columns=["load", "temp", "price"], scaling=True)
    with pytest.raises(ConversionError, match="mixes 2 channels"):
        convert(mixing, tmp_path / "p3", preprocessor=three)


def _first(scalers: dict) -> dict:
    return scalers[next(iter(scalers))]


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda d: _first(d["target_scaler_dict"]).update(scale_=[1.0]), "one of each per column"),
        (lambda d: _first(d["target_scaler_dict"]).update(scale_=None), "not a fitted standard"),
        (lambda d: _first(d["scaler_dict"]).update(scale_=[1.0, 2.0]), "scaler_dict"),
        (lambda d: _first(d["scaler_dict"]).update(scale_=None), "scaler_dict"),
        (lambda d: _first(d["target_scaler_dict"]).update(mean_=["x", "y"]), "not a fitted"),
        (lambda d: _first(d["target_scaler_dict"]).update(scale_=[0.0, 1.0]), "non-zero"),
        (lambda d: _first(d["target_scaler_dict"]).update(mean_=[np.nan, 1.0]), "finite"),
        (lambda d: d.update(target_columns=["oil_temp", "temp"]), r"\['oil_temp'\] are scaled"),
        (
            lambda d: _first(d["target_scaler_dict"]).update(feature_names_in_=["x", "temp"]),
            r"fitted on \['temp', 'x'\]",
        ),
    ],
    ids=[
        "short-scale",
        "null-scale",
        "short-other-scale",
        "null-other-scale",
        "text-mean",
        "zero-scale",
        "nan-mean",
        "renamed-target",
        "renamed-fitted",
    ],
)
def test_damaged_preprocessor_is_refused_in_one_line(tmp_path, capsys, damage, expected):
    """A preprocessor_config.json whose fitted scalers are damaged or disagree with its
    column lists: a ModelSourceError naming what is wrong (never a traceback, never a
    channel silently left unscaled)."""
    from tsfm_public import TimeSeriesPreprocessor

    from ovcast.cli import main
    from ovcast.preprocessor import read_preprocessor

    tsp = TimeSeriesPreprocessor(
        timestamp_column="date",
        target_columns=["load", "temp"],
        observable_columns=["price"],
        context_length=512,
        prediction_length=96,
        scaling=True,
    )
    tsp.train(_frame(6, 600))
    tsp.save_pretrained(tmp_path)
    file = tmp_path / "preprocessor_config.json"
    data = json.loads(file.read_text())
    assert read_preprocessor(file).scaler.kinds == ("standard",) * 3
    damage(data)
    file.write_text(json.dumps(data))
    with pytest.raises(ModelSourceError, match=expected):
        read_preprocessor(file)
    ckpt = ttm_checkpoint(tmp_path / "ckpt", num_input_channels=3)
    assert main(["convert", str(ckpt), str(tmp_path / "pkg"), "--preprocessor", str(file)]) == 1
    err = capsys.readouterr().err
    assert "preprocessor_config.json" in err and "Traceback" not in err


def test_standard_scaler_without_mean_or_std_reads_as_sklearn_applies_it(tmp_path):
    from tsfm_public import TimeSeriesPreprocessor

    from ovcast.preprocessor import read_preprocessor

    frame = _frame(7, 600)
    for with_mean, with_std in [(False, True), (True, False), (False, False)]:
        tsp = TimeSeriesPreprocessor(
            timestamp_column="date",
            target_columns=["load", "temp"],
            context_length=512,
            prediction_length=96,
            scaling=True,
            scaler_args={"with_mean": with_mean, "with_std": with_std},
        )
        tsp.train(frame)
        tsp.save_pretrained(tmp_path)
        scaler = read_preprocessor(tmp_path).scaler
        expected = tsp.preprocess(frame)[["load", "temp"]].to_numpy()
        np.testing.assert_allclose(
            scaler.transform(frame[["load", "temp"]].to_numpy()), expected, atol=1e-9
        )


def test_channel_independent_model_takes_the_preprocessors_channel_count(tmp_path):
    """A zero-shot TTM is saved with one channel; with a 3-column preprocessor it converts
    for 3 channels (granite-tsfm's get_model does the same)."""
    from tsfm_public import TimeSeriesPreprocessor

    ckpt = ttm_checkpoint(tmp_path / "ckpt", num_input_channels=1)
    tsp = TimeSeriesPreprocessor(
        timestamp_column="date",
        target_columns=["load", "temp", "price"],
        context_length=512,
        prediction_length=96,
        scaling=True,
    )
    tsp.train(_frame(5, 800))
    tsp.save_pretrained(ckpt)
    package = convert(ckpt, tmp_path / "pkg")
    assert_parity(package)
    assert package.manifest.num_input_channels == 3


def test_hub_id_with_revision_branch(tmp_path, monkeypatch):
    """A TTM hub id with a context/horizon branch: the branch goes to the hub, the commit
    it served and the branch asked for are recorded (the download is stood in for)."""
    import huggingface_hub

    from ovcast.hf.ttm import R2_HUB_ID, ttm_revision

    ckpt = ttm_checkpoint(
        tmp_path / "ckpt", context_length=1024, prediction_length=192, num_input_channels=1
    )
    snapshot = tmp_path / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(ckpt, snapshot)
    asked = {}

    def download(repo_id, revision=None, **_):
        asked.update(repo_id=repo_id, revision=revision)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    revision = ttm_revision(1024, 192)
    assert revision == "1024-192-r2" and ttm_revision(512, 96) == "main"
    package = convert(R2_HUB_ID, tmp_path / "pkg", revision=revision)
    assert asked == {"repo_id": R2_HUB_ID, "revision": "1024-192-r2"}
    source = package.manifest.source
    assert source["hub_id"] == R2_HUB_ID and source["requested_revision"] == "1024-192-r2"
    assert source["revision"] == snapshot.name
    with pytest.raises(Exception, match="no 1024-48 model"):
        ttm_revision(1024, 48)


def test_cli_converts_ttm_with_its_options(tmp_path):
    from ovcast.cli import main

    ckpt = ttm_checkpoint(
        tmp_path / "ckpt",
        num_input_channels=2,
        resolution_prefix_tuning=True,
        frequency_token_vocab_size=10,
    )
    out = tmp_path / "pkg"
    rc = main(
        [
            "convert",
            str(ckpt),
            str(out),
            "--freq-token",
            "h",
            "--prediction-filter-length",
            "48",
            "--observed-mask",
        ]
    )
    assert rc == 0
    m = json.loads((out / "ovcast.json").read_text())
    assert [t["name"] for t in m["inputs"]] == ["past_values", "past_observed_mask"]
    assert m["frequency"]["fixed"] == 7 and m["prediction_length"] == 48
    rc = main(["convert", str(ckpt), str(tmp_path / "x"), "--freq-token", "99"])
    assert rc == 1


# --- training and fine-tuning -----------------------------------------------------------


def test_train_family_ttm_then_convert_and_evaluate(tmp_path):
    """`ovcast train --family ttm`: the r2 shape scaled to the context, the shared loop and
    scoring; the best checkpoint converts with parity and scores the same in OpenVINO."""
    import pandas as pd

    from ovcast.cli import main

    t = np.arange(900)
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "date": pd.date_range("2024-01-01", periods=len(t), freq="h"),
            "a": np.sin(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(len(t)),
            "b": np.cos(2 * np.pi * t / 12),
        }
    ).to_csv(tmp_path / "data.csv", index=False)
    rc = main(
        [
            "train",
            str(tmp_path / "data.csv"),
            "--family",
            "ttm",
            "--context",
            "64",
            "--horizon",
            "16",
            "--model-config",
            json.dumps({**TINY, "adaptive_patching_levels": 1}),
            "--epochs",
            "2",
            "--lr",
            "0.003",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert rc == 0
    best = tmp_path / "run" / "best"
    config = json.loads((best / "config.json").read_text())
    assert config["model_type"] == "tinytimemixer" and config["patch_length"] == 8
    history = json.loads((best / "training.json").read_text())["history"]
    assert np.isfinite(history[-1]["val_mse"])
    package = convert(best, tmp_path / "pkg")
    assert_parity(package)
    assert package.scaler is not None  # scaler.json from training travels
    engine = Engine(package)
    raw = np.stack([np.sin(2 * np.pi * t[:64] / 24), np.cos(2 * np.pi * t[:64] / 12)], 1)
    assert engine.forecast(raw).shape == (16, 2)


@pytest.mark.parametrize(
    "options, expected",
    [
        (
            dict(resolution_prefix_tuning=True, frequency_token_vocab_size=10),
            "resolution_prefix_tuning=True",
        ),
        (dict(prediction_channel_indices=[0]), "with --targets"),
        (
            dict(
                prediction_channel_indices=[0],
                exogenous_channel_indices=[1],
                enable_forecast_channel_mixing=True,
            ),
            "prediction_channel_indices=[0]",
        ),
    ],
    ids=["prefix-tuning", "channel-indices", "exogenous"],
)
def test_train_ttm_refuses_options_it_cannot_feed(tmp_path, capsys, options, expected):
    """Training feeds windows of the data's columns: a TTM that needs a frequency token,
    future exogenous values or forecasts some channels is refused before training, in one
    line (it crashed mid-run)."""
    import pandas as pd

    from ovcast.cli import main

    t = np.arange(300)
    frame = {"date": pd.date_range("2024-01-01", periods=300, freq="h"), "a": np.sin(t / 4)}
    pd.DataFrame({**frame, "b": np.cos(t / 3)}).to_csv(tmp_path / "data.csv", index=False)
    config = json.dumps({**TINY, "adaptive_patching_levels": 1, **options})
    args = ["train", str(tmp_path / "data.csv"), "--family", "ttm", "--context", "64"]
    args += ["--horizon", "16", "--model-config", config, "--out", str(tmp_path / "run")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "cannot use it" in err and expected in err and "Traceback" not in err
    assert not (tmp_path / "run" / "best").exists()


def test_finetune_ttm_freezes_the_backbone_and_takes_the_seven_channels(tmp_path):
    """granite-tsfm's recipe: a zero-shot (1-channel, channel-independent) TTM fine-tuned on
    the 7 market channels with the backbone frozen; scored against the same baselines."""
    from conftest import make_checkpoint
    from safetensors.numpy import load_file
    from test_finetune import BASE as PATCHTST_BASE
    from test_finetune import write_candles

    from ovcast.errors import DataError
    from ovcast.hf.loading import load_model, resolve_source
    from ovcast.train.config import FinetuneConfig
    from ovcast.train.finetune import _starting_model, finetune

    base = ttm_checkpoint(
        tmp_path / "base",
        context_length=64,
        prediction_length=16,
        num_input_channels=1,
        adaptive_patching_levels=1,
    )
    candles = write_candles(tmp_path / "candles.csv")
    config = FinetuneConfig(
        data=str(candles),
        base=str(base),
        family="ttm",
        out=str(tmp_path / "run"),
        epochs=2,
        head_only=True,
        learning_rate=3e-3,
        windows_per_epoch=256,
        channel_mixing=True,
    )
    report = finetune(config, progress=False)
    forecasters = {r["forecaster"] for r in report["results"]}
    assert forecasters == {"fine-tuned", "base", "last value (random walk)", "drift"}
    best = tmp_path / "run" / "best"
    saved = json.loads((best / "config.json").read_text())
    assert saved["num_input_channels"] == 7 and saved["decoder_mode"] == "mix_channel"
    assert report["best_epoch"] > 0  # an epoch beat the base: only decoder and head moved
    if True:
        before, after = load_file(base / "model.safetensors"), load_file(best / "model.safetensors")
        backbone = [k for k in before if k.startswith("backbone.")]
        assert backbone and all(np.array_equal(before[k], after[k]) for k in backbone)
        assert any(not np.array_equal(before[k], after[k]) for k in before if k.startswith("head."))
    # The "base" scored is the base as published (channel-independent), and so is the start
    # epoch 0 scores: the mixing layers start as the identity, not at random.
    started = _starting_model(resolve_source(base), "ttm", channel_mixing=True)
    published = load_model(resolve_source(base), num_input_channels=7)
    windows = torch.from_numpy(parity_windows(64, 7, 2))
    with torch.no_grad():
        np.testing.assert_array_equal(
            started(past_values=windows).prediction_outputs.numpy(),
            published(past_values=windows).prediction_outputs.numpy(),
        )
    independent = finetune(
        replace(config, channel_mixing=False, epochs=1, out=str(tmp_path / "run2")),
        progress=False,
    )
    assert _base_scores(report) == _base_scores(independent)
    patchtst = make_checkpoint(tmp_path / "pt", **PATCHTST_BASE)
    with pytest.raises(DataError, match="not --family ttm"):
        finetune(
            FinetuneConfig(
                data=str(candles), base=str(patchtst), family="ttm", out=str(tmp_path / "x")
            ),
            progress=False,
        )


def _base_scores(report) -> list:
    return [r["scored"] for r in report["results"] if r["forecaster"] == "base"]


# --- benchmarks -----------------------------------------------------------------------------


def test_bench_backends_run_a_ttm_package_with_its_other_inputs(tmp_path):
    """PyTorch and ONNX Runtime run the package's own signature, the other inputs seeded the
    same way in all three, so their forecasts agree; `ovcast bench` times them side by side."""
    pytest.importorskip("onnxruntime", reason="needs ovcast[bench]")
    from ovcast.bench.backends import load
    from ovcast.cli import main

    ckpt = ttm_checkpoint(tmp_path / "ckpt", **EXOGENOUS_AND_TOKEN)
    package = convert(ckpt, tmp_path / "pkg", prediction_filter_length=48)
    window = parity_windows(512, 3, 4)
    forecasts = {
        name: load(name, package).predict(window) for name in ("openvino", "torch", "onnxruntime")
    }
    assert forecasts["openvino"].shape == (4, 48, 1)
    np.testing.assert_allclose(forecasts["torch"], forecasts["openvino"], atol=1e-4)
    np.testing.assert_allclose(forecasts["onnxruntime"], forecasts["openvino"], atol=1e-4)
    code = main(
        [
            "-q",
            "bench",
            str(package.path),
            "--backends",
            "openvino",  # torch and onnxruntime are timed by the same code as for PatchTST
            "--batch",
            "1",
            "--duration",
            "0.1",
            "--no-coldstart",
            "--json",
            str(tmp_path / "b.json"),
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "b.json").read_text())
    assert results["latency"]["1"]["openvino"]["p50_ms"] > 0
    assert results["throughput_mode"]["f32"]["forecasts_per_s"] > 0  # with the other inputs
    assert results["concurrency"]["throughput"]["2"]["forecasts_per_s"] > 0
    assert all(s["p50_ms"] > 0 for s in results["fast_path"]["steps"].values())
    assert results["limit"]["flops_per_forecast"] > 0 and results["op_profile"]


def test_manifests_written_before_ttm_support_still_load(tmp_path, small_package):
    """No descriptions, none of the new fields: the package loads and forecasts as before."""
    old = tmp_path / "old"
    shutil.copytree(small_package, old)
    manifest = json.loads((old / "ovcast.json").read_text())
    for field in ("output_channels", "exogenous_channels", "series_scalers", "frequency"):
        manifest.pop(field)
    for tensor in manifest["inputs"] + manifest["outputs"]:
        tensor.pop("description")
    (old / "ovcast.json").write_text(json.dumps(manifest))
    engine = Engine(old)
    assert [t.name for t in engine.inputs] == ["past_values"]
    assert engine.forecast_channel_names == engine.channel_names
    window = parity_windows(64, 3, 1)[0]
    np.testing.assert_array_equal(engine.predict(window), Engine(small_package).predict(window))
    with pytest.raises(InvalidInputError, match="one scaler for every series"):
        engine.forecast(window, series_id="a")
    manifest["inputs"][0]["name"] = "x"
    (old / "ovcast.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="first input must be 'past_values'"):
        ModelPackage.load(old)


def test_int8_calibration_feeds_the_default_token_and_varied_futures():
    """int8 is calibrated on what requests feed: the package's default frequency token (every
    other window), every token between, and a different exogenous future per window (it was
    token 0 and one future for all: twice the error at the default token)."""
    from ovcast.convert.pipeline import _calibration_extras
    from ovcast.convert.ttm import ttm_signature
    from ovcast.hf.configs import new_model

    model = new_model("ttm", **{**TINY, **EXOGENOUS_AND_TOKEN}).eval()
    signature = ttm_signature(model, default_freq_token=7)
    extras = _calibration_extras(signature, 20)
    tokens = [int(e["freq_token"][0]) for e in extras]
    assert tokens[::2] == [7] * 10 and set(tokens) == set(range(10))
    futures = np.concatenate([e["future_exogenous"] for e in extras])
    assert futures.shape == (20, 96, 1)
    assert len({f.tobytes() for f in futures}) == 20


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_precision_options_with_every_input(tmp_path, precision):
    """fp16 and int8 (NNCF, calibrated with the other inputs too) convert a TTM that takes a
    frequency token and exogenous futures; their error against PyTorch is recorded."""
    ckpt = ttm_checkpoint(tmp_path / "ckpt", **EXOGENOUS_AND_TOKEN)
    package = convert(ckpt, tmp_path / "pkg", precision=precision)
    report = package.manifest.parity
    assert_parity(package)  # the fp32 IR, checked before compressing
    assert report[f"{precision}_vs_torch"]["max_abs_error"] < 0.5
    engine = Engine(package)
    window = parity_windows(512, 3, 2)
    out = engine.predict(window, freq_token=7, future_exogenous=np.zeros((2, 96, 1), np.float32))
    assert out.shape == (2, 96, 1) and np.isfinite(out).all()
