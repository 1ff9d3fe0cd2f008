"""Download one planespotter model version from a URL and make it ``<dest>/latest``.

Used by the initContainer of the kustomize component k8s/components/model-from-url: the API pods
then load ``/models/latest`` from an emptyDir instead of a PersistentVolumeClaim.

The archive is a (optionally gzip/bz2/xz-compressed) tar of ONE model version folder, as written by
``python -m model train`` under ``models/<version>/``; make it with::

    tar -C models -czf planespotter-<version>.tar.gz <version>

The script streams the download to a temporary file in ``--dest`` (retrying connection errors and
HTTP 429/5xx with backoff), checks its SHA-256 when ``--sha256`` is given, refuses members that are
not plain files or folders or that leave ``<version>/`` (absolute paths, ``..``, links), extracts into
a temporary folder, moves ``<version>`` into place and points the symlink ``latest`` at it (each step
an atomic rename). Run again (the initContainer restarting), it replaces the version.

Exit status 0 on success; 2 with a message on stderr on any error, leaving no partial version.
Environment: ``PLANESPOTTER_MODEL_URL`` and ``PLANESPOTTER_MODEL_SHA256`` are the defaults of
``--url`` and ``--sha256``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

CHUNK = 1 << 20  # bytes per read while streaming the download


class FetchError(Exception):
    """The model archive could not be fetched, verified or unpacked."""


def download(url: str, dst: Path, timeout_s: float = 60.0) -> str:
    """Stream ``url`` into the file ``dst``; return the SHA-256 hex digest of the bytes written.

    Retries connection errors and HTTP 429/500/502/503/504 five times with exponential backoff
    (urllib3 ``Retry``). ``timeout_s`` bounds the connect and each read, in seconds.

    Raises:
        FetchError: HTTP error status or network failure after the retries.
    """
    session = requests.Session()
    retry = Retry(total=5, backoff_factor=1.0, status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=frozenset({"GET"}))
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    digest = hashlib.sha256()
    try:
        with session.get(url, stream=True, timeout=timeout_s) as resp:
            resp.raise_for_status()
            with dst.open("wb") as f:
                for chunk in resp.iter_content(CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
    except requests.RequestException as exc:
        raise FetchError(f"download of {url} failed: {exc}") from exc
    return digest.hexdigest()


def version_of(tar: tarfile.TarFile) -> str:
    """Check the members of a model archive and return its single top-level folder name.

    Raises:
        FetchError: empty archive; a member that is not a regular file or folder; an absolute path,
            a ``..`` component, a file outside the version folder, more than one top-level
            folder, or a folder named ``latest`` or starting with a dot.
    """
    tops: set[str] = set()
    for member in tar.getmembers():
        path = PurePosixPath(member.name)
        parts = [p for p in path.parts if p != "."]
        if path.is_absolute() or ".." in parts:
            raise FetchError(f"unsafe path in archive: {member.name!r}")
        if not parts:  # the entry "." itself
            continue
        if not (member.isfile() or member.isdir()):
            raise FetchError(f"archive member {member.name!r} is not a regular file or folder")
        if len(parts) == 1 and not member.isdir():
            raise FetchError(f"archive member {member.name!r} lies outside a model version folder")
        tops.add(parts[0])
    if len(tops) != 1:
        raise FetchError(f"archive must hold exactly one model version folder, found {sorted(tops)}")
    (version,) = tops
    if version == "latest" or version.startswith("."):
        raise FetchError(f"model version folder may not be named {version!r}")
    return version


def install(archive: Path, dest: Path) -> str:
    """Unpack the model archive into ``dest/<version>`` and point ``dest/latest`` at it.

    Returns:
        The version (the archive's top-level folder name).

    Raises:
        FetchError: the archive is not a readable tar or fails :func:`version_of`.
    """
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as exc:
        raise FetchError(f"not a tar archive: {exc}") from exc
    with tar, tempfile.TemporaryDirectory(prefix=".extract-", dir=dest) as tmp:
        version = version_of(tar)
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tar.extractall(tmp, **extra)
        except (tarfile.TarError, OSError) as exc:
            raise FetchError(f"cannot unpack archive: {exc}") from exc
        target = dest / version
        if target.exists():
            shutil.rmtree(target)
        os.replace(Path(tmp) / version, target)
    link_tmp = dest / ".latest.tmp"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    link_tmp.symlink_to(version)
    os.replace(link_tmp, dest / "latest")
    return version


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (0 ok, 2 error)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("PLANESPOTTER_MODEL_URL"),
                        help="http(s) URL of the model version archive (default: $PLANESPOTTER_MODEL_URL)")
    parser.add_argument("--sha256", default=os.environ.get("PLANESPOTTER_MODEL_SHA256") or None,
                        help="expected SHA-256 (hex) of the archive (default: $PLANESPOTTER_MODEL_SHA256)")
    parser.add_argument("--dest", type=Path, default=Path("/models"), help="models folder (default /models)")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no model URL: pass --url or set PLANESPOTTER_MODEL_URL")
    try:
        args.dest.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".download-", dir=args.dest)
        os.close(fd)
        archive = Path(name)
        try:
            digest = download(args.url, archive)
            if args.sha256 and digest != args.sha256.strip().lower():
                raise FetchError(f"SHA-256 mismatch for {args.url}: got {digest}, expected {args.sha256}")
            version = install(archive, args.dest)
        finally:
            archive.unlink(missing_ok=True)
    except (FetchError, OSError) as exc:
        print(f"fetch_model: error: {exc}", file=sys.stderr)
        return 2
    print(f"fetch_model: {args.url} -> {args.dest / version} (sha256 {digest}); latest -> {version}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
