"""Fine-tune a forecaster on market candles and say honestly whether it beats naive baselines.

    ovcast finetune --data btc-usd-1m.csv --base default --out runs/btc --convert

Flow: OHLCV bars (gaps filled as live) -> the 7 live feature channels (``market.features``,
the same code the live pipeline runs) -> disjoint time splits with a gap -> scalers fitted
on the train split only (RSI stays on its fixed [0, 1] bounds) -> fine-tuning from the base
model (full, or ``head_only``) with early stopping -> evaluation on the test split of the
close price, in price units and scaled, per horizon bucket, for the fine-tuned model, the
base model, the random walk (last value) and drift -> a model card, a plot, and with
``convert`` a parity-checked OpenVINO package.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, require
from ..market.bars import Bars, read_ohlcv_csv
from ..market.features import CHANNELS, MARKET_SCALER_KINDS, FeatureConfig, compute_features
from ..scaling import Scaler
from .data import Splits, gather_windows, window_starts

log = logging.getLogger(__name__)

FEATURES_FILE = "features.csv"
REPORT_FILE = "evaluation.json"
CARD_FILE = "MODEL_CARD.md"
PLOT_FILE = "forecasts.png"


@dataclass
class FinetuneConfig:
    data: str  # OHLCV CSV (time, open, high, low, close, volume) or an `ovcast live` recording
    base: str  # 'default', a checkpoint folder or a hub id
    out: str
    product: str | None = None  # which product of a recording (default: its only one)
    interval_s: int | None = None  # default: inferred from the bars
    macd_output: str = "line"
    volatility_window: int = 20
    splits: str = "0.7,0.15"  # train and validation fractions; test takes the rest
    gap: int | None = None  # rows between splits; default: the horizon
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_only: bool = False
    patience: int = 2
    windows_per_epoch: int = 0
    seed: int = 42
    convert: bool = False


def finetune(config: FinetuneConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the whole flow; returns the evaluation report (also written to OUT)."""
    from ..hf.loading import resolve_source
    from .trainer import TrainConfig, train

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    source = resolve_source(config.base)
    base_config = json.loads((source.path / "config.json").read_text())
    context, horizon = base_config["context_length"], base_config["prediction_length"]
    if base_config["num_input_channels"] != len(CHANNELS):
        raise DataError(
            f"--base {config.base} takes {base_config['num_input_channels']} channels; market "
            f"fine-tuning feeds the {len(CHANNELS)} channels {', '.join(CHANNELS)}"
        )
    features_path = write_features(config, out / FEATURES_FILE)
    gap = horizon if config.gap is None else config.gap
    result = train(
        TrainConfig(
            data=str(features_path),
            out=str(out),
            splits=config.splits,
            split_gap=gap,
            context_length=context,
            prediction_length=horizon,
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            patience=config.patience,
            seed=config.seed,
            init_from=config.base,
            head_only=config.head_only,
            scaler_kinds=list(MARKET_SCALER_KINDS),
            windows_per_epoch=config.windows_per_epoch,
            timestamp_column="time",
        ),
        progress=progress,
    )
    report = evaluate_market(result.best_dir, config.base, features_path, config.splits, gap)
    report["config"] = asdict(config)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    plot_forecasts(report, out / PLOT_FILE)
    (result.best_dir / CARD_FILE).write_text(model_card(report))
    if config.convert:
        from ..convert import convert

        package = convert(
            result.best_dir, out / "package", name=Path(config.out).name or "finetuned"
        )
        report["package"] = str(package.path)
    return report


def load_bars(config: FinetuneConfig) -> Bars:
    """Bars from a recording (SQLite, as ``ovcast live`` writes) or from an OHLCV CSV."""
    with open(config.data, "rb") as f:
        is_recording = f.read(16) == b"SQLite format 3\x00"
    if not is_recording:
        return read_ohlcv_csv(config.data, interval_s=config.interval_s)
    from ..market.recording import Recording

    with Recording(config.data) as recording:
        products = recording.products()
        product = config.product or (products[0] if len(products) == 1 else None)
        if product is None or product not in products:
            raise DataError(f"{config.data} holds {products}; choose one with --product")
        recorded = recording.bars(product)
    if len(recorded) < 2:
        raise DataError(f"{config.data} has {len(recorded)} bars of {product}; too few to train on")
    columns = np.array([b.as_floats() for b in recorded], dtype=np.float64).T
    return Bars(
        np.array([b.start_s for b in recorded], dtype=np.int64),
        *columns,
        np.array([b.filled for b in recorded]),
    )


def write_features(config: FinetuneConfig, path: Path) -> Path:
    """The 7 channels per bar, warm-up rows dropped, as the CSV the trainer reads."""
    bars = load_bars(config)
    features = compute_features(
        bars.high,
        bars.low,
        bars.close,
        bars.volume,
        FeatureConfig(config.macd_output, config.volatility_window),
    )
    ready = ~np.isnan(features).any(axis=1)
    first = int(np.argmax(ready))
    if not ready[first:].all():
        raise DataError("features have gaps after warm-up; check the bars")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["time", *CHANNELS])
        for t, row in zip(bars.time_s[first:], features[first:], strict=True):
            stamp = dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            writer.writerow([stamp, *(f"{v:.12g}" for v in row)])
    log.info(
        "%d bars -> %d feature rows (%d warm-up rows dropped)", len(bars), len(bars) - first, first
    )
    return path


def horizon_buckets(horizon: int) -> list[tuple[int, int]]:
    """Step ranges (1-based, inclusive) that split the horizon into near, mid and far."""
    edges = [b for b in (1, 4, 16, 48, 96) if b < horizon] + [horizon]
    return [
        (lo + 1 if i else 1, hi)
        for i, (lo, hi) in enumerate(zip([0, *edges[:-1]], edges, strict=True))
    ]


def evaluate_market(
    finetuned_dir: Path, base: str, features_path: Path, splits: str, gap: int
) -> dict:
    """Close-price errors on the test split for the fine-tuned and base models and baselines."""
    torch = require("torch", extra="convert", purpose="Evaluating checkpoints")
    from ..hf.loading import load_model, resolve_source
    from .data import read_csv

    series = read_csv(features_path, timestamp_column="time")
    finetuned = load_model(resolve_source(finetuned_dir))
    base_model = load_model(resolve_source(base))
    context, horizon = finetuned.config.context_length, finetuned.config.prediction_length
    spans = Splits.parse(splits, len(series.values), context, gap=gap)
    scaler = Scaler.from_dict(json.loads((finetuned_dir / "scaler.json").read_text()))
    scaled = scaler.transform(series.values)
    contexts, targets = gather_windows(
        scaled, window_starts(spans.test, context, horizon), context, horizon
    )

    def model_close(model) -> np.ndarray:
        with torch.no_grad():
            out = [
                model(past_values=torch.from_numpy(contexts[i : i + 64])).prediction_outputs.numpy()
                for i in range(0, len(contexts), 64)
            ]
        return np.concatenate(out)[..., 0]

    last = contexts[:, -1:, 0]
    slope = (contexts[:, -1, 0] - contexts[:, 0, 0]) / (context - 1)
    steps = np.arange(1, horizon + 1)
    forecasts = {
        "fine-tuned": model_close(finetuned),
        "base": model_close(base_model),
        "random walk (last value)": np.repeat(last, horizon, axis=1),
        "drift": last + slope[:, None] * steps[None, :],
    }
    truth = targets[..., 0]
    to_price = lambda x: scaler.inverse_transform(x[..., None], channels=[0])[..., 0]  # noqa: E731
    truth_price, last_price = to_price(truth), to_price(last)
    rows = []
    for name, scaled_forecast in forecasts.items():
        price = to_price(scaled_forecast)
        for lo, hi in horizon_buckets(horizon):
            sl = slice(lo - 1, hi)
            moved = np.sign(truth_price[:, sl] - last_price)
            called = np.sign(price[:, sl] - last_price)
            decided = (moved != 0) & (called != 0)
            rows.append(
                {
                    "forecaster": name,
                    "steps": f"{lo}-{hi}",
                    "mse_price": float(np.mean((price[:, sl] - truth_price[:, sl]) ** 2)),
                    "mae_price": float(np.mean(np.abs(price[:, sl] - truth_price[:, sl]))),
                    "mse_scaled": float(np.mean((scaled_forecast[:, sl] - truth[:, sl]) ** 2)),
                    "directional_accuracy": float(np.mean(moved[decided] == called[decided]))
                    if decided.any()
                    else None,
                }
            )
    overall = {
        name: float(np.mean((to_price(f) - truth_price) ** 2)) for name, f in forecasts.items()
    }
    sample = np.linspace(0, len(contexts) - 1, min(4, len(contexts))).astype(int)
    return {
        "test_windows": len(contexts),
        "context_length": context,
        "prediction_length": horizon,
        "rows": rows,
        "overall_mse_price": overall,
        "beats_random_walk": overall["fine-tuned"] < overall["random walk (last value)"],
        "examples": {
            "history": to_price(contexts[sample, -3 * horizon :, 0]).tolist(),
            "truth": truth_price[sample].tolist(),
            **{name: to_price(f[sample]).tolist() for name, f in forecasts.items()},
        },
    }


def table(report: dict) -> str:
    lines = [
        f"test split: {report['test_windows']} windows, close price "
        f"(directional accuracy: share of moves called right, vs the last close)",
        f"{'forecaster':<26} {'steps':>7} {'MSE price':>12} {'MAE price':>11} {'MSE scaled':>11} {'dir. acc':>9}",
    ]
    for r in report["rows"]:
        acc = "-" if r["directional_accuracy"] is None else f"{r['directional_accuracy']:.3f}"
        lines.append(
            f"{r['forecaster']:<26} {r['steps']:>7} {r['mse_price']:12.5g} {r['mae_price']:11.5g} "
            f"{r['mse_scaled']:11.4f} {acc:>9}"
        )
    verdict = "beats" if report["beats_random_walk"] else "does NOT beat"
    lines.append(
        f"overall: the fine-tuned model {verdict} the random walk "
        f"(MSE {report['overall_mse_price']['fine-tuned']:.5g} vs "
        f"{report['overall_mse_price']['random walk (last value)']:.5g})"
    )
    return "\n".join(lines)


def model_card(report: dict) -> str:
    c = report["config"] if "config" in report else {}
    return "\n".join(
        [
            "# Fine-tuned forecaster",
            "",
            f"- base model: `{c.get('base', '?')}`; data: `{c.get('data', '?')}`",
            f"- channels: {', '.join(CHANNELS)} (the live pipeline's features); scalers fitted on the train split",
            f"- splits: {c.get('splits', '?')} (train, validation fractions; test the rest), disjoint, "
            f"gap {c.get('gap') or report['prediction_length']} rows",
            f"- reproduce: `ovcast finetune --data {c.get('data', 'DATA')} --base {c.get('base', 'BASE')} "
            f"--out OUT --epochs {c.get('epochs', '?')} --lr {c.get('learning_rate', '?')} --seed {c.get('seed', '?')}"
            f"{' --head-only' if c.get('head_only') else ''}`",
            "",
            "## Test-split evaluation (close price)",
            "",
            "```",
            table(report),
            "```",
            "",
            "A model that does not beat the random walk should not be used to trade on.",
            "",
        ]
    )


def plot_forecasts(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    examples = report["examples"]
    n = len(examples["truth"])
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3), squeeze=False)
    for i, ax in enumerate(axes[0]):
        history = examples["history"][i]
        h = len(examples["truth"][i])
        past = np.arange(-len(history) + 1, 1)
        ahead = np.arange(1, h + 1)
        ax.plot(past, history, color="black", lw=1, label="history")
        ax.plot(ahead, examples["truth"][i], color="black", lw=1, ls=":", label="truth")
        for name, color in (
            ("fine-tuned", "tab:blue"),
            ("base", "tab:orange"),
            ("random walk (last value)", "tab:gray"),
            ("drift", "tab:green"),
        ):
            ax.plot(ahead, examples[name][i], color=color, lw=1, label=name)
        ax.set_title(f"test window {i + 1}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
