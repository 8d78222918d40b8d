"""Output paths of the CLI, checked before the work that fills them begins."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError


def output_file(path: str, flag: str) -> Path:
    """``path`` as a file to write, refused at once when it cannot be: a folder is in its
    place, its folder is missing or not writable (an evaluation should not run for minutes
    and then fail to save its result)."""
    file = Path(path)
    folder = file.parent
    if file.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; expected a file to write")
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{flag} {path}: cannot write in {folder} (permission denied)")
    return file
