"""ovcast doctor's findings, and the code style gate (ruff) that keeps the tree consistent."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ovcast.cli import main
from ovcast.runtime.doctor import ENV_ADVICE, check_environment, run_checks

ROOT = Path(__file__).resolve().parents[1]


def test_doctor_flags_the_guides_environment(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    findings = {f.found: f for f in check_environment()}
    assert findings["OMP_WAIT_POLICY=ACTIVE"].level == "warn"
    assert "PR #38189" in findings["ONEDNN_MAX_CPU_ISA=AVX2"].action
    for name in ENV_ADVICE:
        monkeypatch.delenv(name, raising=False)
    assert [f.level for f in check_environment()] == ["ok"]


def test_doctor_covers_every_topic_and_the_package(small_package, capsys):
    topics = {f.topic for f in run_checks(str(small_package))}
    assert {
        "cpu",
        "cores",
        "load",
        "memory",
        "environment",
        "versions",
        "package",
        "tuning",
    } <= topics
    assert main(["doctor", str(small_package)]) == 0
    out = capsys.readouterr().out
    assert "usable" in out and "ovcast tune" in out


def test_doctor_on_a_missing_package_is_a_finding_not_a_crash(tmp_path, capsys):
    assert main(["doctor", str(tmp_path / "none")]) == 0
    assert "no model package at" in capsys.readouterr().out


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
    reason="ruff is part of ovcast[test]",
)
def test_ruff_lint_and_format():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    for args in (["check", "src", "tests"], ["format", "--check", "src", "tests"]):
        result = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_exactly_the_readme_test_command_and_make_installs_as_documented():
    import re

    readme = (ROOT / "README.md").read_text()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    makefile = (ROOT / "Makefile").read_text()

    def commands(section: str) -> list[str]:
        body = readme.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        block = re.search(r"```bash\n(.*?)```", body, re.S).group(1)
        return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]

    assert commands("Quick start") == ["make quickstart"]
    assert commands("Tests") == ["make test"]
    assert "make test" in ci
    # the install the README shows by hand is the one make runs
    (manual,) = commands("Install")
    venv, pip = manual.split(" && ")
    assert venv == "python3 -m venv .venv"
    assert "INSTALL = $(VENV)/bin/" + pip.removeprefix(".venv/bin/") in makefile
