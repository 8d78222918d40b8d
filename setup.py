"""Build step on top of pyproject.toml: vendor the dashboard's chart library (frontend/vendor.py).

Runs for wheels, sdists built into wheels, and editable installs alike, so that
``ovcast live --dashboard`` works offline on every install. OVCAST_SKIP_FRONTEND=1 builds
without it (the dashboard then refuses to start and says why).
"""

import os
import runpy
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithFrontend(build_py):
    def run(self):
        if os.environ.get("OVCAST_SKIP_FRONTEND") != "1":
            vendor = runpy.run_path(str(Path(__file__).parent / "frontend" / "vendor.py"))
            vendor["vendor"]()
        super().run()


setup(cmdclass={"build_py": BuildPyWithFrontend})
