"""Downloading a file from a list of mirrors with MD5 verification.

A file is streamed to a temporary name in the destination folder, its MD5 checked, and only then
renamed into place: a partial or corrupt download is deleted and never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
from collections.abc import Sequence
from pathlib import Path

from ..._io import atomic_open

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16


class ChecksumError(ValueError):
    """A file's MD5 is not the published one (corrupt, partial or a different file)."""


class DownloadError(OSError):
    """No mirror delivered a file with the expected MD5; the message lists every attempt."""


def md5sum(path: str | os.PathLike) -> str:
    """The hex MD5 of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: Path, md5: str, timeout: float = 30.0) -> None:
    """Downloads ``url`` to ``dest`` if its MD5 is ``md5``; nothing is left behind otherwise.

    Raises:
        ChecksumError: The downloaded bytes have another MD5 (the partial file is deleted).
        OSError: Network or HTTP failure (``urllib.error.URLError`` is an ``OSError``).
    """
    import urllib.request  # here, not at import time: it pulls in ssl and http

    with atomic_open(dest) as f:  # an exception (bad MD5, network) leaves nothing behind
        digest = hashlib.md5()
        size = 0
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if digest.hexdigest() != md5:
            raise ChecksumError(
                f"{url}: MD5 {digest.hexdigest()} of the {size} bytes received does not match "
                f"the published {md5}; the file is corrupt or incomplete and was discarded"
            )


def download(urls: Sequence[str], dest: Path, md5: str, timeout: float = 30.0) -> Path:
    """Downloads one file, trying each mirror URL in turn until one gives the expected MD5.

    Args:
        urls: Full URLs of the same file on different mirrors, tried in order.
        dest: Where the verified file goes (its folder is created).
        md5: The published hex MD5.
        timeout: Seconds to wait for each connection / read.

    Returns:
        ``dest``.

    Raises:
        DownloadError: Every mirror failed; the message gives each URL and why.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        logger.info("downloading %s to %s", url, dest)
        try:
            fetch(url, dest, md5, timeout)
            return dest
        except (OSError, ChecksumError) as err:
            http = isinstance(err, urllib.error.HTTPError)
            reason = err if http else getattr(err, "reason", None) or err  # "HTTP Error 404: ..." / "[Errno 111] ..."
            logger.warning("download of %s failed: %s", url, reason)
            failures.append(f"  {url}: {reason}")
    raise DownloadError(f"could not download {dest.name} with MD5 {md5}; every mirror failed:\n" + "\n".join(failures))
