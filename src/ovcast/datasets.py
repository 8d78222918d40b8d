"""Public data sets behind the README's figures, fetched into the cache on first use.

    path = dataset_file("etth1")     # ~/.cache/ovcast/datasets/ETTh1.csv, downloaded once
    ovcast evaluate default etth1    # the same, from the command line

ovcast ships no data set: each is fetched from its public source, checked against the
SHA-256 of the published file, and kept in ``$OVCAST_HOME/datasets`` (or
``~/.cache/ovcast/datasets``). A download that is cut short or altered is refused and
nothing is kept. Where there is no network, the error says which file to put where. Each
data set's URL can be pointed elsewhere (a mirror, or a test's server on 127.0.0.1) with
its environment variable (``OVCAST_ETTH1_URL``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .default_model import default_cache_dir
from .errors import DataError

log = logging.getLogger(__name__)

CHUNK = 1 << 16


@dataclass(frozen=True)
class Dataset:
    name: str  # what the CLI takes in place of a file, any case
    file: str
    url: str
    sha256: str
    size: int  # bytes
    licence: str
    source: str
    url_variable: str  # the environment variable that points the download elsewhere

    @property
    def download_url(self) -> str:
        return os.environ.get(self.url_variable) or self.url


ETTH1 = Dataset(
    name="etth1",
    file="ETTh1.csv",
    # The ETDataset repository at a fixed commit: the file the Granite model cards and the
    # PatchTST paper score on (17,420 hourly rows, 2016-07-01 to 2018-06-26).
    url="https://raw.githubusercontent.com/zhouhaoyi/ETDataset/"
    "1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small/ETTh1.csv",
    sha256="f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
    size=2589657,
    licence="CC BY-ND 4.0 (Creative Commons Attribution-NoDerivatives 4.0)",
    source='ETDataset, Zhou et al., "Informer: Beyond Efficient Transformer for Long '
    'Sequence Time-Series Forecasting", AAAI 2021 (github.com/zhouhaoyi/ETDataset)',
    url_variable="OVCAST_ETTH1_URL",
)
DATASETS = {ETTH1.name: ETTH1}


def datasets_dir() -> Path:
    return default_cache_dir() / "datasets"


def resolve_data(text: str) -> str:
    """A DATA argument as a file to read: a file that exists as it is; the name of a data set
    above (``etth1``) as its cached copy, fetched on first use; anything else as it is."""
    dataset = DATASETS.get(text.lower())
    if dataset is None or Path(text).is_file():
        return text
    return str(dataset_file(dataset.name))


def dataset_file(name: str, folder: Path | None = None, *, timeout_s: float = 60.0) -> Path:
    """The data set's file in the cache, downloaded and checked first if it is not there."""
    dataset = DATASETS[name]
    target = (folder or datasets_dir()) / dataset.file
    if target.is_file():
        if _sha256(target) == dataset.sha256:
            return target
        log.warning("%s is not the published %s (its SHA-256 differs): fetching it again",
                    target, dataset.file)  # fmt: skip
    return fetch(dataset, target, timeout_s=timeout_s)


def fetch(dataset: Dataset, target: Path, *, timeout_s: float = 60.0) -> Path:
    """Download ``dataset`` to ``target``: kept only when every byte arrived and its SHA-256
    is the published one (so ``target`` is never a partial file)."""
    import httpx

    url = dataset.download_url
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0))  # offline: say so soon
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        part = tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", delete=False
        )
    except OSError as exc:
        raise DataError(_instructions(dataset, target, f"cannot write there: {exc}")) from None
    log.info("fetching %s (%.1f MB; licence %s) from %s into %s",
             dataset.file, dataset.size / 1e6, dataset.licence, url, target)  # fmt: skip
    digest, size = hashlib.sha256(), 0
    try:
        with part, httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as reply:
            reply.raise_for_status()
            for chunk in reply.iter_bytes(CHUNK):
                size += len(chunk)
                if size > dataset.size:  # not the file: stop reading what may never end
                    break
                digest.update(chunk)
                part.write(chunk)
    except httpx.HTTPError as exc:
        os.unlink(part.name)
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError) or size:
            reason = f"the download was cut short ({reason})"
        raise DataError(_instructions(dataset, target, reason, url)) from None
    except BaseException:
        os.unlink(part.name)
        raise
    if size != dataset.size or digest.hexdigest() != dataset.sha256:
        os.unlink(part.name)
        got = f"more than {dataset.size:,}" if size > dataset.size else f"{size:,}"
        raise DataError(
            _instructions(
                dataset,
                target,
                f"the download is not the published file ({got} bytes, SHA-256 "
                f"{digest.hexdigest() if size <= dataset.size else 'not computed'}; a "
                "truncated or altered file): nothing was kept",
                url,
            )
        )
    os.replace(part.name, target)
    os.chmod(target, 0o644)
    log.info("%s is in the cache (SHA-256 checked): %s", dataset.file, target)
    return target


def _instructions(dataset: Dataset, target: Path, reason: str, url: str | None = None) -> str:
    """What went wrong, and exactly which file to put where by hand."""
    where = f" from {url}" if url else ""
    return (
        f"{dataset.file} is not in the cache and could not be fetched{where}: {reason}. "
        f"Download {dataset.url} ({dataset.size:,} bytes, SHA-256 {dataset.sha256}; "
        f"{dataset.source}; licence {dataset.licence}) and save it as {target}, or give the "
        f"file's path instead of '{dataset.name}' (set {dataset.url_variable} to use a mirror)"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
