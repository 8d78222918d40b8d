"""Fine-tune a forecaster on market candles and say honestly whether it beats naive baselines.

    ovcast finetune --data btc-usd-1m.csv --base default --out runs/btc --convert
    ovcast finetune --data btc-usd-1m.csv --family ttm --head-only --out runs/btc-ttm

Bars (a CSV or an `ovcast live` recording) -> the 7 live feature channels -> disjoint time
splits with a gap (default: the horizon) -> scalers fitted on the train split (RSI keeps its
fixed [0, 1] bounds) -> the training loop from the base model, selecting on what is scored:
the validation MSE of the close on real bars -> the same score on the test split for the
fine-tuned model, the base model, the random walk and drift, per horizon bucket -> OUT/
evaluation.json, OUT/forecasts.png, OUT/best/MODEL_CARD.md and, with ``convert``, a package.
What an earlier run left in OUT (its package, report and plot) is removed first: it would
otherwise sit beside the new weights as if it were theirs.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
from dataclasses import asdict, replace
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ..cli._options import as_flags
from ..errors import DataError, require
from ..hf.ttm import FAMILY as TTM
from ..hf.ttm import R2_HUB_ID
from ..market.features import CHANNELS, MARKET_SCALER_KINDS
from .config import FinetuneConfig
from .data import fingerprint, market_series
from .evaluate import evaluate
from .forecasters import LAST_VALUE, baselines
from .loop import TrainResult, fit
from .report import Report, plot_forecasts
from .splits import split_series

log = logging.getLogger(__name__)

TARGET = "close"  # what is scored, and so what early stopping selects on
FINETUNED, BASE = "fine-tuned", "base"
REPORT_FILE = "evaluation.json"
CARD_FILE = "MODEL_CARD.md"
PLOT_FILE = "forecasts.png"
PACKAGE_DIR = "package"
# MSEs closer than this (relative) are a tie: one test split cannot tell them apart.
TIE_TOLERANCE = 0.01
# The layers --channel-mixing adds to a TTM decoder, and the last layer of each (zeroed).
MIXING_WEIGHTS = "decoder.*.channel_feature_mixer.*"
MIXING_OUTPUT = "decoder.*.channel_feature_mixer.mlp.fc2"


def finetune(config: FinetuneConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the whole flow; returns the evaluation report as written to OUT/evaluation.json."""
    torch = require("torch", extra="convert", purpose="Fine-tuning")
    from ..hf.loading import load_model, predictor, read_family, resolve_source

    base = config.base or (R2_HUB_ID if config.family == TTM else "default")
    config = replace(config, base=base)  # recorded in training.json and the model card
    out, source = Path(config.out), resolve_source(base)
    family = read_family(source.path)
    if config.family is not None and family != config.family:
        raise DataError(f"--base {base} is a {family} model, not --family {config.family}")
    if config.channel_mixing and family != TTM:
        raise DataError("--channel-mixing applies to TTM (--family ttm) bases")
    model = _starting_model(source, family, config.channel_mixing)
    context, horizon = model.config.context_length, model.config.prediction_length
    if model.config.num_input_channels != len(CHANNELS):
        raise DataError(
            f"--base {base} takes {model.config.num_input_channels} channels; market "
            f"fine-tuning feeds the {len(CHANNELS)} channels {', '.join(CHANNELS)}"
        )
    series = market_series(config.bars(), config.features())
    data = split_series(
        series,
        replace(config, gap=horizon if config.gap is None else config.gap),
        context,
        horizon,
        targets=[TARGET],
        score_filled=config.score_filled,
        scaler_kinds=MARKET_SCALER_KINDS,
    )
    _remove_earlier_outputs(out)
    torch.manual_seed(config.seed)
    result = fit(
        model,
        data,
        config,
        out,
        starts_trained=True,
        progress=progress,
        data_source=fingerprint(config.data, series),
    )
    forecasters = {
        FINETUNED: predictor(load_model(resolve_source(result.best_dir))),
        BASE: predictor(load_model(source, **_config_changes(source.path, family, False))),
        **baselines(horizon, context, with_drift=True),
    }
    report = evaluate(
        forecasters, data.test, data.scaler, examples=4, data=str(config.data), units="price"
    )
    report.selected_on = _selection(result)
    document = _write_outputs(report, config, result, data.splits.describe())
    if config.convert:
        from ..convert import convert

        package = convert(result.best_dir, out / PACKAGE_DIR, name=out.name or "finetuned")
        document["package"] = str(package.path)
    return document


def _starting_model(source: Any, family: str, channel_mixing: bool) -> Any:
    """The base model training starts from. With --channel-mixing, TTM's decoder gains
    channel-mixing layers the base does not have; each is a residual block, and its last
    layer starts at zero, so the starting model forecasts exactly what the published base
    does (the score before the first epoch is the base's) and training grows the mixing."""
    from ..hf.loading import load_model

    changes = _config_changes(source.path, family, channel_mixing)
    model = load_model(
        source, new_layers=[MIXING_WEIGHTS] if "decoder_mode" in changes else [], **changes
    )
    if "decoder_mode" in changes:
        torch = require("torch", extra="convert", purpose="Fine-tuning")
        with torch.no_grad():
            for name, module in model.named_modules():
                if fnmatch(name, MIXING_OUTPUT):
                    module.weight.zero_()
                    module.bias.zero_()
    return model


def _config_changes(path: Path, family: str, channel_mixing: bool) -> dict[str, Any]:
    """TTM's zero-shot checkpoints are channel-independent and saved with one channel: they
    take the 7 market channels as they are (granite-tsfm's get_model sets the count the same
    way); ``channel_mixing`` switches the decoder to mixing them."""
    if family != TTM:
        return {}
    saved = json.loads((path / "config.json").read_text())
    changes: dict[str, Any] = {}
    if channel_mixing and saved.get("decoder_mode") != "mix_channel":
        changes["decoder_mode"] = "mix_channel"
    mixes = saved.get("mode") == "mix_channel" or saved.get("decoder_mode") == "mix_channel"
    if saved.get("num_input_channels") != len(CHANNELS) and not mixes:
        changes["num_input_channels"] = len(CHANNELS)
    return changes


def beats(report: Report, name: str, other: str) -> bool:
    """``name``'s scored MSE is below ``other``'s by more than ``TIE_TOLERANCE``."""
    return report.score(name).mse < report.score(other).mse * (1 - TIE_TOLERANCE)


def verdict(report: Report) -> str:
    """One line: does the fine-tuned model beat the random walk and the base, on the score?"""
    mse = {name: report.score(name).mse for name in (FINETUNED, BASE, LAST_VALUE)}

    def versus(other: str, loses: str) -> str:
        if beats(report, FINETUNED, other):
            return "beats"
        if beats(report, other, FINETUNED):
            return loses
        return f"is within {TIE_TOLERANCE:.0%} of (no better than)"

    return (
        f"the fine-tuned model {versus(LAST_VALUE, 'does NOT beat')} the random walk (MSE "
        f"{mse[FINETUNED]:.5g} vs {mse[LAST_VALUE]:.5g}) and {versus(BASE, 'does not beat')} "
        f"the base model ({mse[BASE]:.5g}), on the scored test targets"
    )


def _selection(result: TrainResult) -> str:
    chosen = (
        "the base model: no epoch beat it"
        if result.best_epoch == 0
        else f"epoch {result.best_epoch} of {result.epochs_run}"
    )
    return f"{result.selected_on} -> {chosen}"


def _write_outputs(
    report: Report, config: FinetuneConfig, result: TrainResult, splits: str
) -> dict[str, Any]:
    """OUT/evaluation.json, OUT/forecasts.png and OUT/best/MODEL_CARD.md."""
    out = Path(config.out)
    document = {
        **report.to_dict(),
        "verdict": verdict(report),
        "table": report.table(buckets=True),
        "beats_random_walk": beats(report, FINETUNED, LAST_VALUE),
        "beats_base": beats(report, FINETUNED, BASE),
        "best_epoch": result.best_epoch,
        "splits": splits,
        "config": asdict(config),
    }
    (out / REPORT_FILE).write_text(json.dumps(document, indent=2) + "\n")
    if report.examples is not None:
        plot_forecasts(report.examples, out / PLOT_FILE, title="close, test")
    (result.best_dir / CARD_FILE).write_text(_model_card(report, config, splits))
    return document


def _remove_earlier_outputs(out: Path) -> None:
    """An earlier run's package, report and plot: stale beside this run's weights."""
    for name in (PACKAGE_DIR, REPORT_FILE, PLOT_FILE):
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        log.warning("%s was an earlier run's: removed (this run writes its own)", path)


def _model_card(report: Report, config: FinetuneConfig, splits: str) -> str:
    product = f" (product {config.product})" if config.product else ""
    return f"""# Fine-tuned forecaster

- base model: `{config.base}`; data: `{config.data}`{product}
- channels: {", ".join(CHANNELS)} (the live pipeline's features); scalers fitted on the train split
- splits: {splits}
- scored: {report.targets[0]}, {report.scoring}
- selected on: {report.selected_on}
- reproduce: `{shlex.join(["ovcast", "finetune", *as_flags(config)])}`
  (`training.json` beside this card holds every setting and the history)

## Test-split evaluation

```
{report.table(buckets=True)}
```

Overall, {verdict(report)}. A model that does not beat the random walk should not be used
to trade on.
"""
