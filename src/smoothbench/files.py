"""Files that appear whole or not at all: written to a hidden temporary file beside
their final name, synced and renamed into place, so that a killed writer leaves nothing
under the final name that a reader could take as finished. Every module that writes a
result (run records, checkpoints, tables, prepared data) writes through here.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from smoothbench.errors import SmoothbenchError

_CHUNK = 1 << 22
_UMASK = os.umask(0)
os.umask(_UMASK)


class StorageError(SmoothbenchError, OSError):
    """A file could not be written (full disk, no permission); the message names it."""


def sha256_of_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "w") -> Iterator:
    """A stream whose content appears at ``path`` only when the block ends without error.

    It writes a hidden ``.{name}.*.tmp`` file in the same folder, syncs it and renames it
    over ``path``; on an error the temporary file is removed and ``path`` is untouched.
    One job writes a given path at a time (Snakemake runs one job per output), so a
    ``.{name}.*.tmp`` found beside it was left by a killed writer and is removed first.
    An error of the file system (a full disk, a read-only folder) names ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        # mkstemp creates 0600; honour the umask instead
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.filename is None:
            raise StorageError(
                f"{path}: could not be written ({error.strerror or error})"
            ) from error
        raise


def write_json_atomic(path: Path | str, payload: dict) -> None:
    """Write JSON to ``path`` via a temporary file in the same folder and a rename."""
    with atomic_file(path) as stream:
        json.dump(payload, stream, indent=2, sort_keys=False)
        stream.write("\n")
