"""One status line on stderr for a long-running command (``ovcast replay``).

with StatusLine() as status:
    status.show("replaying: 120 of 690 bars ...")     # as often as you like
    status.show(full, shorter, shortest)               # the longest that fits a terminal
# on a terminal: one line, rewritten in place (log lines print above it);
# elsewhere (a log file, a pipe): a plain line every ``every_s`` seconds.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

CLEAR = "\r\x1b[K"  # back to the line's start, erase it


class StatusLine:
    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        every_s: float = 10.0,
        redraw_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stderr
        self.in_place = self.stream.isatty()
        self.every_s = redraw_s if self.in_place else every_s
        self.clock = clock
        self._last = -float("inf")
        self._text = ""
        self._shorter: tuple[str, ...] = ()
        self._drawn = False  # the line is on screen (and must be cleared before a log line)
        self._filter = _ClearBeforeLogging(self)

    def __enter__(self) -> StatusLine:
        if self.in_place:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._filter)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def show(self, text: str, *shorter: str, now: bool = False) -> None:
        """Say ``text``; written when the last line is old enough (or ``now``). On a terminal
        the first of ``text, *shorter`` that fits its width is drawn (the last one cut)."""
        self._text, self._shorter = text, shorter
        if now or self.clock() - self._last >= self.every_s:
            self._write()

    def close(self) -> None:
        """The last text stays as a finished line."""
        if self.in_place:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._filter)
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False

    def clear(self) -> None:
        if self._drawn:
            self.stream.write(CLEAR)
            self.stream.flush()
            self._drawn = False

    def _write(self) -> None:
        self._last = self.clock()
        if not self.in_place:
            self.stream.write(self._text + "\n")
        else:
            width = shutil.get_terminal_size().columns
            fits = [t for t in (self._text, *self._shorter) if len(t) < width]
            last = (self._text, *self._shorter)[-1]
            text = fits[0] if fits else last[: width - 2] + "…"
            self.stream.write(CLEAR + text)
            self._drawn = True
        self.stream.flush()


class _ClearBeforeLogging(logging.Filter):
    """Clears the status line before a log line is written; the next show() redraws it."""

    def __init__(self, status: StatusLine) -> None:
        super().__init__()
        self.status = status

    def filter(self, record: logging.LogRecord) -> bool:
        self.status.clear()
        self.status._last = -float("inf")  # redraw at the next show()
        return True
