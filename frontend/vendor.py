"""Vendor the dashboard's chart library from the npm registry into the Python package.

    python frontend/vendor.py            # what `pip install` runs (setup.py's build step)

The dashboard must work offline, so the library is shipped inside ``ovcast`` rather than
loaded from a CDN. The version and its sha512 come from ``package-lock.json`` (npm's own
lockfile: ``npm update`` / ``npm audit`` work on it as usual); the tarball is fetched from
the registry (``$npm_config_registry`` for a mirror), checked against that hash, and the
standalone ES-module build plus its licence are extracted. Nothing is fetched when the
vendored files already match the lockfile. Needs only the standard library: no Node.js.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCKFILE = HERE / "package-lock.json"
TARGET = HERE.parent / "src" / "ovcast" / "dashboard" / "static" / "vendor"
DEFAULT_REGISTRY = "https://registry.npmjs.org"

# npm package -> {file in its tarball: name in TARGET}
FILES = {
    "lightweight-charts": {
        "package/dist/lightweight-charts.standalone.production.mjs": "lightweight-charts.mjs",
        "package/LICENSE": "lightweight-charts.LICENSE",
    },
}
STAMP = "vendor.json"  # what was vendored, to skip the download when it still matches


def locked(name: str) -> tuple[str, str]:
    """(version, integrity) of ``name`` in the lockfile."""
    entry = json.loads(LOCKFILE.read_text())["packages"][f"node_modules/{name}"]
    return entry["version"], entry["integrity"]


def tarball_url(name: str, version: str) -> str:
    registry = os.environ.get("npm_config_registry") or DEFAULT_REGISTRY
    return f"{registry.rstrip('/')}/{name}/-/{name}-{version}.tgz"


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise RuntimeError(f"{what}: {algorithm} {actual} does not match the lockfile's {expected}")


def up_to_date(wanted: dict[str, str]) -> bool:
    stamp = TARGET / STAMP
    if not stamp.is_file():
        return False
    recorded = json.loads(stamp.read_text())
    return recorded.get("packages") == wanted and all(
        (TARGET / name).is_file()
        and hashlib.sha256((TARGET / name).read_bytes()).hexdigest() == sha
        for name, sha in recorded.get("files", {}).items()
    )


def vendor() -> list[Path]:
    """Fetch, verify and extract what ``FILES`` names; returns the vendored paths."""
    wanted = {name: "@".join(locked(name)) for name in FILES}
    if up_to_date(wanted):
        return [TARGET / name for name in json.loads((TARGET / STAMP).read_text())["files"]]
    TARGET.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for name, members in FILES.items():
        version, integrity = locked(name)
        url = tarball_url(name, version)
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                data = response.read()
        except OSError as exc:
            raise RuntimeError(
                f"could not fetch {url} for the dashboard's chart library: {exc}. "
                "Set npm_config_registry to a reachable npm mirror, or OVCAST_SKIP_FRONTEND=1 "
                "to build without the dashboard."
            ) from exc
        check_integrity(data, integrity, url)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member, out_name in members.items():
                content = archive.extractfile(member).read()
                (TARGET / out_name).write_bytes(content)
                written[out_name] = hashlib.sha256(content).hexdigest()
    (TARGET / STAMP).write_text(json.dumps({"packages": wanted, "files": written}, indent=1) + "\n")
    return [TARGET / name for name in written]


if __name__ == "__main__":
    for path in vendor():
        print(path, file=sys.stderr)
