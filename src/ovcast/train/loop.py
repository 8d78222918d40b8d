"""The training loop: a model, split windows and a config in; the best checkpoint out.

    torch.manual_seed(config.seed)             # the caller seeds, then builds the model
    result = fit(model, data, config, Path("runs/x"))

One loop for `ovcast train` and `ovcast finetune`. Each epoch trains on ``windows_per_epoch``
random training windows (AdamW, linear warm-up then cosine decay, gradients clipped at 1;
the loss is the model's MSE over all channels), then scores the validation windows with
``evaluate``: the same target channels and target steps the final report scores. The best
score so far is kept in OUT/best. Weights that start trained (``starts_trained``: fine-tuning)
are scored before the first epoch and stay in OUT/best if no epoch beats them.
OUT/checkpoint-last holds all a ``resume`` needs: weights, optimizer, schedule, random
states, history and the config, which must match the resumed run's (paths compared as the
files they name, the data by its SHA-256). A new run in an OUT that holds an older one
removes the older OUT/best first, so no old checkpoint outlives the run that replaced it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import ConfigError, TrainingError, require
from ..hf.loading import SCALER_FILE
from ..scaling import Scaler
from .config import LoopConfig
from .evaluate import evaluate
from .forecasters import RUN_FILE
from .metrics import Metrics
from .splits import Batch, SplitData, Windows

log = logging.getLogger(__name__)

BEST_DIR = "best"
LAST_DIR = "checkpoint-last"
STATE_FILE = "trainer_state.pt"
SUMMARY_FILE = RUN_FILE  # config, data, splits and history; in OUT and inside OUT/best
RESUMABLE_CHANGES = ("epochs", "patience", "num_threads")  # may differ when resuming
PATH_OPTIONS = ("data", "out", "init_from", "base")  # compared as the files they name


@dataclass
class TrainResult:
    best_dir: Path
    best_epoch: int  # 0: the starting weights, which no epoch beat
    best_val_mse: float
    selected_on: str
    history: list[dict[str, Any]]
    seconds: float

    @property
    def epochs_run(self) -> int:
        return sum(1 for h in self.history if h["epoch"] > 0)


@dataclass
class _Trainer:
    """What one optimisation step touches."""

    model: Any
    optimizer: Any
    schedule: Any
    rng: np.random.Generator  # picks each epoch's training windows
    trainable: list[Any]


@dataclass
class _Progress:
    """The run's state between epochs (what a resume restores)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_mse: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    epoch: int = 0  # epochs completed
    elapsed: float = 0.0

    def record(self, epoch: int, train_mse: float | None, val: Metrics, seconds: float) -> bool:
        """Log an epoch; True if its validation score is the best so far."""
        improved = val.mse < self.best_val_mse
        self.history.append(
            dict(
                epoch=epoch, train_mse=train_mse, val_mse=val.mse, val_mae=val.mae, seconds=seconds
            )
        )
        self.epoch, self.elapsed = epoch, seconds
        if improved:
            self.best_val_mse, self.best_epoch, self.bad_epochs = val.mse, epoch, 0
        else:
            self.bad_epochs += 1
        shown = "start" if train_mse is None else f"train mse {train_mse:.4f}"
        best = " (best)" if improved else ""
        log.info("epoch %d: %s, val mse %.4f mae %.4f%s", epoch, shown, val.mse, val.mae, best)
        return improved


def fit(
    model: Any,
    data: SplitData,
    config: LoopConfig,
    out: Path,
    *,
    starts_trained: bool = False,
    resume: bool = False,
    progress: bool = True,
    data_source: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place; OUT/best gets the checkpoint with the best validation score.

    ``data_source`` (``data.fingerprint``) is stored with the run: a resume refuses data that
    changed, and ``ovcast evaluate`` knows which rows the run trained on.
    """
    torch = require("torch", extra="convert", purpose="Training")
    from ..runtime.cpu import usable_cores

    torch.set_num_threads(config.num_threads or usable_cores())
    make_run_folder(out)
    val = data.val.subsample(config.max_eval_windows)
    record = _run_record(data, val, data_source)
    per_epoch = min(config.windows_per_epoch or len(data.train), len(data.train))
    steps = math.ceil(per_epoch / config.batch_size) * config.epochs
    trainer = _trainer(torch, model, config, steps)
    run = _Progress()
    resuming = resume and (out / LAST_DIR / STATE_FILE).is_file()
    if resume and not resuming:
        log.warning("nothing to resume in %s: starting a new run", out / LAST_DIR)
    summary = partial(_summary, config, record=record)
    if resuming:
        run = _load_last(torch, out / LAST_DIR, trainer, config, data_source)
    else:
        _remove_previous_best(out / BEST_DIR)
        if starts_trained and run.record(0, None, _validate(model, val, data.scaler), 0.0):
            _save_best(model, data.scaler, out / BEST_DIR, summary(run))
    t0 = time.perf_counter() - run.elapsed
    for epoch in range(run.epoch + 1, config.epochs + 1):
        if run.bad_epochs >= config.patience:
            break
        chosen = trainer.rng.choice(data.train.starts, size=per_epoch, replace=False)
        bar = f"epoch {epoch}/{config.epochs}" if progress else None
        train_mse = _train_epoch(torch, trainer, data.train.gather, chosen, config.batch_size, bar)
        seconds = time.perf_counter() - t0
        if run.record(epoch, train_mse, _validate(model, val, data.scaler), seconds):
            _save_best(model, data.scaler, out / BEST_DIR, summary(run))
        _save_last(torch, out / LAST_DIR, trainer, run, config, data_source)
    (out / SUMMARY_FILE).write_text(json.dumps(summary(run), indent=2) + "\n")
    if run.best_epoch < 0:
        raise TrainingError(
            f"no epoch had a finite validation score ({out / SUMMARY_FILE} has the history): "
            "training diverged; try a lower --lr"
        )
    best = (run.best_epoch, run.best_val_mse, record["selected_on"])
    return TrainResult(out / BEST_DIR, *best, run.history, run.elapsed)


def _trainer(torch: Any, model: Any, config: LoopConfig, total_steps: int) -> _Trainer:
    """AdamW over the trainable parameters, warm-up then cosine decay over ``total_steps``."""
    if config.head_only:
        for name, parameter in model.named_parameters():
            parameter.requires_grad = _trains_with_head_only(model, name)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(total_steps, config.warmup_fraction)
    )
    return _Trainer(model, optimizer, schedule, np.random.default_rng(config.seed), trainable)


def _trains_with_head_only(model: Any, parameter: str) -> bool:
    """TTM follows granite-tsfm's fine-tuning recipe (the backbone is frozen; decoder and
    head train); PatchTST and PatchTSMixer train only the head."""
    if getattr(model.config, "model_type", "") == "tinytimemixer":
        return not parameter.startswith("backbone.")
    return parameter.startswith("head.")


def _train_epoch(
    torch: Any,
    trainer: _Trainer,
    gather: Callable[[np.ndarray], Batch],
    chosen: np.ndarray,
    batch_size: int,
    bar_label: str | None,
) -> float:
    """One pass over the ``chosen`` training windows; returns their mean training loss."""
    tqdm = require("tqdm", extra="convert", purpose="Training").tqdm
    bar = tqdm(total=len(chosen), unit="win", desc=bar_label, disable=bar_label is None)
    trainer.model.train()
    running = 0.0
    for i in range(0, len(chosen), batch_size):
        batch = gather(chosen[i : i + batch_size])
        loss = trainer.model(
            past_values=torch.from_numpy(batch.contexts),
            future_values=torch.from_numpy(batch.futures),
        ).loss
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.trainable, 1.0)
        trainer.optimizer.step()
        trainer.schedule.step()
        running += loss.item() * len(batch.contexts)
        bar.update(len(batch.contexts))
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{trainer.schedule.get_last_lr()[0]:.1e}")
    bar.close()
    return running / len(chosen)


def _validate(model: Any, val: Windows, scaler: Scaler) -> Metrics:
    """The selection score: exactly what the final report scores, on the validation windows."""
    from ..hf.loading import predictor

    return evaluate({"model": predictor(model)}, val, scaler).score("model")


def make_run_folder(out: Path) -> None:
    """Create OUT, or say in one line why it cannot be (a file in the way, no permission)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the run folder --out {out}: {exc.strerror}") from exc


def _remove_previous_best(folder: Path) -> None:
    if folder.is_dir():
        log.warning(
            "%s held an earlier run's checkpoint: removed (this run writes its own)", folder
        )
        shutil.rmtree(folder)


def _run_record(
    data: SplitData, val: Windows, data_source: dict[str, Any] | None
) -> dict[str, Any]:
    """What selects the checkpoint, what data the run read, and the rows of each split (which
    ``ovcast evaluate`` then refuses to score as if unseen)."""
    selected_on = f"validation MSE (scaled) of {', '.join(val.target_names)}; {val.scoring}"
    if len(val) < len(data.val):
        selected_on += (
            f"; on {len(val)} of the {len(data.val)} validation windows, evenly spaced "
            "(--max-eval-windows)"
        )
    return {"data_source": data_source, "splits": asdict(data.splits), "selected_on": selected_on}


def _summary(config: LoopConfig, run: _Progress, *, record: dict[str, Any]) -> dict[str, Any]:
    import torch
    import transformers

    return {
        "config": asdict(config),
        **record,
        "best_epoch": run.best_epoch,
        "best_val_mse": run.best_val_mse,
        "history": run.history,
        "seconds": run.elapsed,
        "versions": {
            "ovcast": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


def _save_best(model: Any, scaler: Scaler, folder: Path, summary: dict[str, Any]) -> None:
    """The checkpoint, its scaler, and the config and history that made it."""
    model.save_pretrained(folder)
    (folder / SCALER_FILE).write_text(json.dumps(scaler.to_dict(), indent=2) + "\n")
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")


def _save_last(
    torch: Any,
    folder: Path,
    trainer: _Trainer,
    run: _Progress,
    config: LoopConfig,
    data_source: dict[str, Any] | None,
) -> None:
    folder.mkdir(exist_ok=True)
    state = {
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "schedule": trainer.schedule.state_dict(),
        "rng": trainer.rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "progress": asdict(run),
        "config": asdict(config),
        "paths": _resolved_paths(config),
        "data_source": data_source,
    }
    torch.save(state, folder / STATE_FILE)


def _load_last(
    torch: Any,
    folder: Path,
    trainer: _Trainer,
    config: LoopConfig,
    data_source: dict[str, Any] | None,
) -> _Progress:
    state = torch.load(folder / STATE_FILE, weights_only=False)
    if "config" not in state:
        raise ConfigError(f"{folder} was written by an older ovcast; start a new run (--out)")
    paths, now = state.get("paths", {}), _resolved_paths(config)
    changed = {
        key: (value, getattr(config, key, None))
        for key, value in state["config"].items()
        if key not in RESUMABLE_CHANGES
        and value != getattr(config, key, None)
        and not (key in paths and paths[key] == now.get(key))  # the same file, spelt otherwise
    }
    before = (state.get("data_source") or {}).get("sha256")
    if before and data_source and before != data_source["sha256"]:
        raise ConfigError(
            f"{folder} belongs to a run on other data: {data_source['path']} changed since the "
            "run began (its SHA-256 differs). Resuming would train one model on two data sets; "
            "use a new --out"
        )
    if changed:
        shown = ", ".join(f"{k} was {old!r}, now {new!r}" for k, (old, new) in changed.items())
        raise ConfigError(
            f"{folder} belongs to another run ({shown}); resume with the same settings "
            "(only epochs, patience and threads may change) or use a new --out"
        )
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.schedule.load_state_dict(state["schedule"])
    trainer.rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    log.info("resumed from %s after epoch %d", folder, state["progress"]["epoch"])
    return _Progress(**state["progress"])


def _resolved_paths(config: LoopConfig) -> dict[str, str]:
    """The path options that name existing files or folders, as absolute paths."""
    found = {}
    for key in PATH_OPTIONS:
        value = getattr(config, key, None)
        if isinstance(value, str) and (key == "out" or Path(value).expanduser().exists()):
            found[key] = str(Path(value).expanduser().resolve())
    return found


def _warmup_cosine(total_steps: int, warmup_fraction: float) -> Any:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor
