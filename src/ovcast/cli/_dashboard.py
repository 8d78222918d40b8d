"""The --dashboard option that `ovcast live` and `ovcast replay` share."""

from __future__ import annotations

import argparse


def dashboard_address(text: str) -> str:
    """argparse type: a HOST:PORT the dashboard can listen on."""
    from ..dashboard.server import parse_address

    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def add_dashboard_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dashboard",
        metavar="HOST:PORT",
        type=dashboard_address,
        help="also serve a live page of bars, forecasts, feed health and latency "
        "(e.g. 127.0.0.1:8050; port 0 picks a free one; works offline)",
    )
