"""CLI options generated from config dataclasses: one place for each option's name, default and help.

A config field declares its option with ``option(...)`` instead of a bare default::

    @dataclass
    class TrainConfig:
        epochs: int = option(10, help="passes over the training windows")
        lr: float = option(1e-4, help="peak AdamW learning rate", flag="--lr")

    add_options(parser, TrainConfig)                 # --epochs, --lr with defaults in --help
    config = from_args(TrainConfig, args, data=path)  # the fields back from the parsed args

Fields without ``option`` metadata (or with ``cli=False``) are not options; pass them to
``from_args`` as keywords. Booleans become ``--flag`` / ``--no-flag``; an option without a
default is required. A subclass that wants another default re-declares the field with
``redefault(Base, "name", value)``, keeping its flag and help.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING: Any = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    help: str,
    flag: str | None = None,
    metavar: str | None = None,
    choices: Sequence[Any] | None = None,
    parse: Callable[[str], Any] | None = None,
    default_factory: Callable[[], Any] | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field that is also a command-line option (see the module docstring)."""
    metadata = {
        "help": help,
        "flag": flag,
        "metavar": metavar,
        "choices": choices,
        "parse": parse,
        "cli": cli,
    }
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def redefault(config_cls: type, name: str, default: Any, *, help: str | None = None) -> Any:
    """The option ``name`` of ``config_cls`` with another default (and help), for a subclass."""
    base = {f.name: f for f in dataclasses.fields(config_cls)}[name]
    metadata = {**base.metadata, **({"help": help} if help else {})}
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(config_cls: type) -> list[dataclasses.Field]:
    """The fields of ``config_cls`` that are command-line options."""
    return [
        f
        for f in dataclasses.fields(config_cls)
        if "help" in f.metadata and f.metadata.get("cli", True)
    ]


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_cls: type,
    *,
    exclude: Sequence[str] = (),
) -> None:
    """Add one option per ``option(...)`` field of ``config_cls``, default shown in the help."""
    hints = typing.get_type_hints(config_cls)
    for field in option_fields(config_cls):
        if field.name in exclude:
            continue
        kind = _scalar_type(hints[field.name])
        default = _default_of(field)
        meta = field.metadata
        flag = flag_of(field)
        help_text = meta["help"]
        if kind is bool:
            parser.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=help_text,
            )
            continue
        required = _is_required(field)
        shown = "" if required or default is None or default == "" else f" (default: {default})"
        kwargs: dict[str, Any] = {
            "dest": field.name,
            "help": help_text + shown,
            "type": _readable(meta["parse"]) if meta.get("parse") else kind,
        }
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if meta.get("choices") is not None:
            kwargs["choices"] = meta["choices"]
        parser.add_argument(flag, **kwargs)


def from_args(config_cls: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """Build ``config_cls`` from parsed args (its option fields) plus ``extra`` keywords."""
    values = {
        f.name: getattr(args, f.name) for f in option_fields(config_cls) if hasattr(args, f.name)
    }
    values.update(extra)
    return config_cls(**values)


def as_flags(config: Any) -> list[str]:
    """The flags that rebuild ``config``: its required options, then those off their default."""
    flags: list[str] = []
    fields = sorted(option_fields(type(config)), key=lambda f: not _is_required(f))
    for field in fields:
        value = getattr(config, field.name)
        if not _is_required(field) and value == _default_of(field):
            continue
        flag = flag_of(field)
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list | tuple):
            flags += [flag, ",".join(str(v) for v in value)]
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        else:
            flags += [flag, str(value)]
    return flags


def positive_seconds(text: str) -> float:
    """A duration for argparse: a finite number of seconds above 0 (not 0, NaN or inf)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text!r}")
    return value


def _readable(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` for argparse: its ValueError's message reaches the user (argparse would
    otherwise say only "invalid <function> value")."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _scalar_type(hint: Any) -> Any:
    """``int | None`` -> int; ``str`` -> str; other hints are parsed as strings."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1:
            return _scalar_type(members[0])
        return str
    if hint in (int, float, str, bool):
        return hint
    return str
