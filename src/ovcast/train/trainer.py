"""Train a Granite-architecture PatchTST / PatchTSMixer on a CSV, on CPU.

    ovcast train data.csv --out runs/etth1 --splits etth1 --epochs 10 --seed 42

The scaler is fitted on the train rows only and saved beside the weights (scaler.json),
so the checkpoint is a self-contained MODEL for ``ovcast convert`` and ``ovcast evaluate``.
Each epoch samples ``windows_per_epoch`` random training windows (all when 0): on 2 cores
a full ETTh1 epoch is minutes, so sampling trades epoch length for more validations.
``checkpoint-last/`` is written after every epoch; ``--resume`` continues from it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, require
from ..scaling import Scaler
from .data import Splits, gather_windows, read_csv, window_starts
from .metrics import RunningErrors

log = logging.getLogger(__name__)

BEST_DIR = "best"
LAST_DIR = "checkpoint-last"
STATE_FILE = "trainer_state.pt"
SUMMARY_FILE = "training.json"


@dataclass
class TrainConfig:
    """Everything that determines a training run; saved in training.json to reproduce it."""

    data: str
    out: str
    family: str = "patchtst"  # patchtst | patchtsmixer
    columns: list[str] | None = None  # default: every numeric column
    timestamp_column: str | None = None
    splits: str = "0.7,0.1"  # 'etth1', fractions 'TRAIN,VAL' or row ends 'A,B,C'
    context_length: int = 512
    prediction_length: int = 96
    model_overrides: dict[str, Any] = field(default_factory=dict)  # on top of the Granite config
    epochs: int = 10
    batch_size: int = 64
    windows_per_epoch: int = 0  # 0 = every training window each epoch
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1  # of all steps; then cosine decay to 0
    patience: int = 3  # epochs without validation improvement before stopping
    seed: int = 42
    init_from: str | None = None  # start from this checkpoint's weights and config (fine-tune)
    head_only: bool = False  # train only the forecasting head (fast fine-tuning)
    scaler_kinds: list[str] | None = None  # per column; default: standard for every column
    split_gap: int | None = None  # with fraction splits: disjoint splits this many rows apart
    num_threads: int = 0  # 0 = usable cores
    max_eval_windows: int = 0  # 0 = every validation window


@dataclass
class TrainResult:
    best_dir: Path
    best_val_mse: float
    epochs_run: int
    history: list[dict[str, float]]
    seconds: float


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Run training; returns where the best checkpoint is and the validation history."""
    torch = require("torch", extra="convert", purpose="Training")
    from ..hf.configs import new_model
    from ..runtime.cpu import usable_cores

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    torch.set_num_threads(config.num_threads or usable_cores())

    series = read_csv(config.data, columns=config.columns, timestamp_column=config.timestamp_column)
    splits = Splits.parse(
        config.splits, len(series.values), config.context_length, gap=config.split_gap
    )
    if splits.test[1] > len(series.values):
        raise DataError(
            f"split ends at row {splits.test[1]} but {config.data} has {len(series.values)} rows"
        )
    scaler = Scaler.fit(
        series.values[slice(*splits.train)], config.scaler_kinds or "standard", series.columns
    )
    scaled = scaler.transform(series.values)
    train_starts = window_starts(splits.train, config.context_length, config.prediction_length)
    val_starts = window_starts(splits.val, config.context_length, config.prediction_length)
    if config.max_eval_windows and len(val_starts) > config.max_eval_windows:
        val_starts = val_starts[
            np.linspace(0, len(val_starts) - 1, config.max_eval_windows).astype(int)
        ]

    if config.init_from:
        model = _init_from(config, len(series.columns))
    else:
        model = new_model(
            config.family,
            context_length=config.context_length,
            prediction_length=config.prediction_length,
            num_input_channels=len(series.columns),
            **config.model_overrides,
        )
    per_epoch = min(config.windows_per_epoch or len(train_starts), len(train_starts))
    steps_per_epoch = math.ceil(per_epoch / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.head_only:
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("head.")
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(total_steps, config.warmup_fraction)
    )
    history: list[dict[str, float]] = []
    best_val, bad_epochs, start_epoch, elapsed = math.inf, 0, 0, 0.0
    if resume and (out / LAST_DIR / STATE_FILE).is_file():
        state = torch.load(out / LAST_DIR / STATE_FILE, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        history, best_val, bad_epochs = state["history"], state["best_val"], state["bad_epochs"]
        start_epoch, elapsed = state["epoch"], state["elapsed"]
        log.info("resumed from %s at epoch %d", out / LAST_DIR, start_epoch)

    tqdm = require("tqdm", extra="convert", purpose="Training").tqdm
    t0 = time.perf_counter() - elapsed
    epoch = start_epoch
    for epoch in range(start_epoch, config.epochs):
        if bad_epochs >= config.patience:
            break
        model.train()
        chosen = rng.choice(train_starts, size=per_epoch, replace=False)
        bar = tqdm(
            total=per_epoch,
            unit="win",
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            dynamic_ncols=True,
        )
        running = 0.0
        for i in range(0, per_epoch, config.batch_size):
            ctx, tgt = gather_windows(
                scaled,
                chosen[i : i + config.batch_size],
                config.context_length,
                config.prediction_length,
            )
            loss = model(
                past_values=torch.from_numpy(ctx), future_values=torch.from_numpy(tgt)
            ).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            running += loss.item() * len(ctx)
            bar.update(len(ctx))
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{schedule.get_last_lr()[0]:.1e}")
        bar.close()
        val = evaluate_torch(model, scaled, val_starts, config)
        record = {
            "epoch": epoch + 1,
            "train_mse": running / per_epoch,
            "val_mse": val.mse,
            "val_mae": val.mae,
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        improved = val.mse < best_val
        log.info(
            "epoch %d: train mse %.4f, val mse %.4f mae %.4f%s",
            epoch + 1,
            record["train_mse"],
            val.mse,
            val.mae,
            " (best)" if improved else "",
        )
        if improved:
            best_val, bad_epochs = val.mse, 0
            _save_checkpoint(model, scaler, out / BEST_DIR)
        else:
            bad_epochs += 1
        (out / LAST_DIR).mkdir(exist_ok=True)
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "best_val": best_val,
                "bad_epochs": bad_epochs,
                "epoch": epoch + 1,
                "elapsed": time.perf_counter() - t0,
            },
            out / LAST_DIR / STATE_FILE,
        )
    seconds = time.perf_counter() - t0
    result = TrainResult(out / BEST_DIR, best_val, len(history), history, seconds)
    summary = {
        "config": asdict(config),
        "best_val_mse": best_val,
        "history": history,
        "seconds": seconds,
        "torch": torch.__version__,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    if (out / BEST_DIR).is_dir():
        (out / BEST_DIR / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return result


def evaluate_torch(
    model, scaled: np.ndarray, starts: np.ndarray, config: TrainConfig, batch_size: int = 256
) -> RunningErrors:
    """MSE/MAE of ``model`` over the windows at ``starts`` of already-scaled values."""
    import torch

    model.eval()
    errors = RunningErrors()
    with torch.no_grad():
        for i in range(0, len(starts), batch_size):
            ctx, tgt = gather_windows(
                scaled, starts[i : i + batch_size], config.context_length, config.prediction_length
            )
            pred = model(past_values=torch.from_numpy(ctx)).prediction_outputs.numpy()
            errors.update(pred, tgt)
    return errors


def _init_from(config: TrainConfig, num_channels: int):
    """The model of an existing checkpoint, checked against the data and the run's shapes."""
    from ..hf.loading import load_model, resolve_source

    model = load_model(resolve_source(config.init_from))
    c = model.config
    wanted = (config.context_length, config.prediction_length, num_channels)
    if (c.context_length, c.prediction_length, c.num_input_channels) != wanted:
        raise DataError(
            f"--init-from {config.init_from} has context/horizon/channels "
            f"{(c.context_length, c.prediction_length, c.num_input_channels)}; this run needs {wanted}"
        )
    return model


def _save_checkpoint(model, scaler: Scaler, folder: Path) -> None:
    model.save_pretrained(folder)
    (folder / "scaler.json").write_text(json.dumps(scaler.to_dict(), indent=2))


def _warmup_cosine(total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
