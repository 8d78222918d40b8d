"""The train/finetune/evaluate configs are the CLI: one place for each option's name,
default and help, and a config turns back into the command line that rebuilds it."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from ovcast.cli import build_parser
from ovcast.cli._options import add_options, as_flags, from_args, option_fields
from ovcast.train.config import EvaluateConfig, FinetuneConfig, LoopConfig, TrainConfig


def parse(config_cls, argv):
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_options(parser, config_cls)
    return from_args(config_cls, parser.parse_args(argv), **_not_options(config_cls, argv))


def _not_options(config_cls, argv):
    return {"data": "d.csv"} if config_cls is TrainConfig else {}


def test_every_field_is_an_option_of_its_command():
    commands = build_parser()._subparsers._group_actions[0].choices
    for command, config_cls, positional in (
        ("train", TrainConfig, {"data"}),
        ("finetune", FinetuneConfig, set()),
        ("evaluate", EvaluateConfig, {"model", "data"}),
    ):
        dests = {a.dest for a in commands[command]._actions}
        fields = {f.name for f in dataclasses.fields(config_cls)}
        assert fields - positional <= dests, fields - positional - dests
        assert {f.name for f in option_fields(config_cls)} == fields - positional


def test_subclasses_change_defaults_but_not_flags_or_help():
    finetune = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
    loop = {f.name: f for f in dataclasses.fields(LoopConfig)}
    assert finetune["epochs"].default == 5 and loop["epochs"].default == 10
    assert finetune["epochs"].metadata == loop["epochs"].metadata
    assert "default: the horizon" in finetune["gap"].metadata["help"]
    help_text = build_parser()._subparsers._group_actions[0].choices["finetune"].format_help()
    assert "(default: 5)" in help_text and "--lr" in help_text and "--score-filled" in help_text


@pytest.mark.parametrize(
    "config",
    [
        FinetuneConfig(
            data="btc.csv",
            out="runs/x",
            product="BTC-USD",
            gap=0,
            learning_rate=3e-5,
            head_only=True,
            score_filled=True,
            time_unit="us",
        ),
        TrainConfig(
            data="d.csv",
            out="runs/y",
            columns=["a", "b"],
            target_columns=["a"],
            splits="100,200,300",
            model_overrides={"d_model": 16},
            init_from="default",
        ),
    ],
)
def test_a_config_round_trips_through_its_flags(config):
    assert parse(type(config), as_flags(config)) == config


def test_required_options_and_readable_parse_errors(capsys):
    parser = argparse.ArgumentParser(prog="x")
    add_options(parser, FinetuneConfig)
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "o"])
    assert "the following arguments are required: --data" in capsys.readouterr().err
    parser = argparse.ArgumentParser(prog="x")
    add_options(parser, TrainConfig)
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "o", "--model-config", "{oops"])
    assert "expected a JSON object" in capsys.readouterr().err
