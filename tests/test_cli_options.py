"""The config-dataclass -> argparse bridge every subcommand uses for its options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from ovcast.cli._options import add_options, from_args, option


@dataclass
class Example:
    data: str  # not an option: passed to from_args
    epochs: int = option(10, help="passes over the data")
    lr: float = option(1e-4, help="peak learning rate", flag="--learning-rate")
    family: str = option("patchtst", help="architecture", choices=("patchtst", "ttm"))
    limit: int | None = option(None, help="stop after N")
    head_only: bool = option(False, help="train the head only")
    columns: list[str] = option(help="columns", default_factory=list, parse=lambda s: s.split(","))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    return parser.parse_args(argv)


def test_defaults_come_from_the_dataclass() -> None:
    config = from_args(Example, parse(), data="x.csv")
    assert config == Example(data="x.csv")


def test_flags_types_choices_and_booleans() -> None:
    args = parse(
        "--epochs",
        "3",
        "--learning-rate",
        "0.5",
        "--family",
        "ttm",
        "--limit",
        "7",
        "--head-only",
        "--columns",
        "a,b",
    )
    config = from_args(Example, args, data="y.csv")
    assert (config.epochs, config.lr, config.family, config.limit) == (3, 0.5, "ttm", 7)
    assert config.head_only is True and config.columns == ["a", "b"]
    assert from_args(Example, parse("--no-head-only"), data="z").head_only is False


def test_bad_values_are_refused_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (("--epochs", "many"), ("--family", "lstm")):
        with pytest.raises(SystemExit):
            parse(*argv)
    assert "invalid choice" in capsys.readouterr().err


def test_help_shows_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, Example, exclude=("columns",))
    text = parser.format_help()
    assert "passes over the data (default: 10)" in text
    assert "--columns" not in text
