"""An evaluation's result, and its renderings: a table, JSON, a model card and a plot.

The report always says what it scores (which channels, which target steps) and, after
training, what the checkpoint was selected on, so the two can be seen to be the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require
from .metrics import ErrorSums, Metrics, horizon_buckets


@dataclass(frozen=True)
class Published:
    """A figure from a paper or model card, shown beside ours but not run here."""

    name: str
    mse: float
    mae: float | None = None


@dataclass
class Examples:
    """A few windows of the first scored channel in data units, for a plot."""

    history: np.ndarray  # (n, steps) the end of each context
    truth: np.ndarray  # (n, horizon)
    forecasts: dict[str, np.ndarray]  # name -> (n, horizon)


@dataclass
class Report:
    """Every forecaster's errors on the same windows: over the scored target steps and over all."""

    data: str
    split: str
    windows: int
    prediction_length: int
    targets: tuple[str, ...]  # the channels scored
    scoring: str  # which target steps count, in words
    scored: dict[str, ErrorSums]  # forecaster -> sums over the scored target steps
    every: dict[str, ErrorSums]  # forecaster -> sums over every target step
    units: str = ""  # the data units' name when it means something (one channel: "price")
    selected_on: str = ""  # set by training: what chose the checkpoint
    notes: list[str] = field(default_factory=list)  # how the protocol was chosen, in words
    published: list[Published] = field(default_factory=list)
    examples: Examples | None = None

    def score(self, forecaster: str, *, every_step: bool = False) -> Metrics:
        """The forecaster's errors over the whole horizon."""
        sums = (self.every if every_step else self.scored)[forecaster]
        return sums.over(1, self.prediction_length)

    @property
    def left_out(self) -> int:
        """Target steps (window, step) not scored: on filled or partial bars."""
        name = next(iter(self.scored))
        return int(self.every[name].cells.sum() - self.scored[name].cells.sum()) // len(
            self.targets
        )

    def rows(self, *, buckets: bool) -> list[tuple[str, tuple[int, int], Metrics, Metrics]]:
        """(forecaster, steps, scored, every step) per forecaster, per bucket if asked."""
        ranges = [(1, self.prediction_length)]
        if buckets:
            ranges = horizon_buckets(self.prediction_length) + ranges
        return [
            (name, steps, self.scored[name].over(*steps), self.every[name].over(*steps))
            for name in self.scored
            for steps in ranges
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "split": self.split,
            "windows": self.windows,
            "prediction_length": self.prediction_length,
            "scored": {
                "channels": list(self.targets),
                "steps": self.scoring,
                "target_steps_left_out": self.left_out,
            },
            "selected_on": self.selected_on,
            "notes": self.notes,
            "results": [
                {
                    "forecaster": name,
                    "steps": f"{lo}-{hi}",
                    "scored": scored.to_dict(),
                    "every_step": every.to_dict(),
                }
                for name, (lo, hi), scored, every in self.rows(buckets=True)
            ],
            "published": [vars(p) for p in self.published],
        }

    def table(self, *, buckets: bool = False) -> str:
        """A plain-text table; with ``buckets``, near/mid/far steps and directional accuracy."""
        left_out = self.left_out
        lines = [self._caption(left_out)]
        columns = ["MSE", "MAE"]
        if self.units:
            columns += [f"MSE {self.units}", f"MAE {self.units}"]
        if buckets:
            columns.append("dir. acc")
        if left_out:
            columns.append("MSE all steps")
        lines.append(f"{'forecaster':<46} {'steps':>7} " + " ".join(f"{c:>13}" for c in columns))
        for name, (lo, hi), scored, every in self.rows(buckets=buckets):
            cells: list[float | None] = [scored.mse, scored.mae]
            if self.units:
                cells += [scored.mse_units, scored.mae_units]
            if buckets:
                cells.append(scored.directional_accuracy)
            if left_out:
                cells.append(every.mse)
            lines.append(f"{name:<46} {f'{lo}-{hi}':>7} " + " ".join(_cell(c) for c in cells))
        if self.published:
            lines.append("published (not run here):")
            lines += [f"  {p.name:<60} {_cell(p.mse)} {_cell(p.mae)}" for p in self.published]
        return "\n".join(lines)

    def _caption(self, left_out: int) -> str:
        total = self.windows * self.prediction_length
        of = f" of {self.data}" if self.data else ""
        lines = [
            f"{self.split} split{of}: {self.windows} windows, horizon {self.prediction_length}",
            f"scored: {', '.join(self.targets)}, scaled"
            + (f" and in {self.units}" if self.units else "")
            + f"; {self.scoring}"
            + (f" ({left_out} of {total} target steps left out)" if left_out else ""),
        ]
        if self.selected_on:
            lines.append(f"selected on: {self.selected_on}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def plot_forecasts(examples: Examples, path: Path, *, title: str) -> None:
    """A few test windows: history, truth and each forecaster, side by side."""
    matplotlib = require("matplotlib", extra="bench", purpose="Plotting forecasts")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, horizon = examples.truth.shape
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3), squeeze=False)
    past = np.arange(-examples.history.shape[1] + 1, 1)
    ahead = np.arange(1, horizon + 1)
    for i, ax in enumerate(axes[0]):
        ax.plot(past, examples.history[i], color="black", lw=1, label="history")
        ax.plot(ahead, examples.truth[i], color="black", lw=1, ls=":", label="truth")
        for name, forecast in examples.forecasts.items():
            ax.plot(ahead, forecast[i], lw=1, label=name)
        ax.set_title(f"{title}, window {i + 1}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(value: float | None) -> str:
    if value is None:
        return f"{'-':>13}"
    return f"{value:>13.5g}"
