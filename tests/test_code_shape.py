"""Gates on the code itself: mypy is clean, and train/ stays legible (short functions)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60


def tool(name: str) -> str | None:
    return shutil.which(name) or (
        str(Path(sys.executable).parent / name)
        if (Path(sys.executable).parent / name).exists()
        else None
    )


@pytest.mark.skipif(tool("mypy") is None, reason="mypy is part of ovcast[test]")
def test_mypy_is_clean(tmp_path):
    """The config is pyproject.toml's [tool.mypy]; a fresh cache, so nothing stale hides."""
    result = subprocess.run(
        [tool("mypy"), "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_train_functions_are_short():
    """nanoGPT-legible: no function in src/ovcast/train/ runs over ~60 lines."""
    long = []
    for path in sorted((ROOT / "src" / "ovcast" / "train").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these: " + ", ".join(long)


def test_nothing_imports_the_package_root_for_its_version():
    """`from .. import __version__` runs the package root's imports from inside it."""
    offenders = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "src" / "ovcast").rglob("*.py")
        if "from .. import __version__" in path.read_text()
    }
    assert not offenders, offenders
