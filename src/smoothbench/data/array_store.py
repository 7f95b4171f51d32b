"""On-disk format of prepared datasets, written atomically and read memory-mapped.

A prepared dataset is a folder of plain ``.npy`` files plus ``manifest.json``::

    train_images.npy       uint8  (N, H, W, C)
    train_labels.npy       int32  (N,)
    validation_images.npy  uint8  (M, H, W, C)
    validation_labels.npy  int32  (M,)
    mean.npy               float32 (H, W, C)   per-pixel mean of train_images / 255
    manifest.json          shapes, K, counts, sha256 of every array, settings

Arrays are streamed to disk batch by batch (ImageNet at 72 px is about 19 GB and is
never held in memory) and hashed while they are written. Everything is written into a
hidden temporary folder next to the destination and moved into place only when
complete, ``manifest.json`` last: a killed job leaves no file under its final name
that a reader could take as finished, and a reader trusts nothing without the
manifest.

The manifest holds only what the data is (no timestamp, no host): preparing the same
data again writes the same bytes. Training jobs key on the manifest's content, not on
the arrays' modification times (``workflow/rules/train.smk``), so re-preparing or
touching identical data retrains nothing, while different data does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from smoothbench.errors import SmoothbenchError
from smoothbench.files import StorageError, sha256_of_file

ARRAY_NAMES = (
    "train_images",
    "train_labels",
    "validation_images",
    "validation_labels",
    "mean",
)
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class PreparedDataError(SmoothbenchError, RuntimeError):
    """Prepared data that is missing, incomplete, corrupted or inconsistent."""


class StreamingArrayWriter:
    """Write an ``.npy`` file of known shape batch by batch, hashing the bytes written.

    Rows must arrive in order and add up exactly to ``shape[0]``; :meth:`close`
    refuses a short or long file.
    """

    def __init__(self, path: Path | str, shape: tuple[int, ...], dtype) -> None:
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.rows_written = 0
        self._digest = hashlib.sha256()
        self._stream = open(self.path, "wb")
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_1_0(
            _HashingStream(self._stream, self._digest), header
        )

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:]:
            raise ValueError(
                f"{self.path.name}: rows of shape {rows.shape[1:]}, expected {self.shape[1:]}"
            )
        if self.rows_written + len(rows) > self.shape[0]:
            raise ValueError(
                f"{self.path.name}: more than the {self.shape[0]} rows announced"
            )
        data = rows.tobytes()
        self._digest.update(data)
        try:
            self._stream.write(data)
        except OSError as error:
            raise StorageError(
                f"{self.path}: could not be written ({error.strerror or error})"
            ) from error
        self.rows_written += len(rows)

    def close(self) -> str:
        """Flush to disk and return the file's sha256."""
        try:
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self._stream.close()
        except OSError as error:
            raise StorageError(
                f"{self.path}: could not be written ({error.strerror or error})"
            ) from error
        if self.rows_written != self.shape[0]:
            raise ValueError(
                f"{self.path.name}: wrote {self.rows_written} rows, announced {self.shape[0]}"
            )
        return self._digest.hexdigest()


class _HashingStream:
    def __init__(self, stream, digest) -> None:
        self._stream, self._digest = stream, digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._stream.write(data)


def save_array(path: Path, array: np.ndarray) -> str:
    """Write a whole (small) array with the streaming writer; return its sha256."""
    writer = StreamingArrayWriter(path, array.shape, array.dtype)
    writer.write(array)
    return writer.close()


@contextlib.contextmanager
def staging_folder(destination: Path | str) -> Iterator[Path]:
    """A hidden temporary folder beside ``destination``, removed if the block fails."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    # A job killed mid-write leaves its staging folder behind; Snakemake runs one job
    # per output folder at a time, so any staging folder found here is stale.
    for stale in destination.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=destination, prefix=".staging-"))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, destination: Path, names: list[str]) -> None:
    """Move finished files from ``staging`` into ``destination``, the manifest last."""
    ordered = [name for name in names if name != MANIFEST_NAME] + [MANIFEST_NAME]
    # Remove any stale manifest first: from here until the new one lands, the folder
    # has no manifest and so reads as unfinished.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(destination / MANIFEST_NAME)
    for name in ordered:
        os.replace(staging / name, destination / name)


def read_manifest(folder: Path | str) -> dict:
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.exists():
        raise PreparedDataError(
            f"{path}: no manifest; the dataset in {folder} was not prepared, or its preparation did not finish"
        )
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except json.JSONDecodeError as error:
        raise PreparedDataError(f"{path}: not valid JSON ({error})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PreparedDataError(
            f"{path}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    return manifest


def open_prepared(
    folder: Path | str, verify_checksums: bool = True
) -> tuple[dict, dict[str, np.ndarray]]:
    """Open a prepared dataset memory-mapped, after checking it against its manifest.

    Checks that every array exists with the manifest's dtype and shape, that labels
    are in [0, K), and (``verify_checksums``) that each file's sha256 matches.
    Raises :class:`PreparedDataError` naming the file at fault.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    arrays = {}
    for name, entry in manifest["arrays"].items():
        path = folder / entry["file"]
        if not path.exists():
            raise PreparedDataError(
                f"{path}: listed in {folder / MANIFEST_NAME} but missing"
            )
        if verify_checksums:
            actual = sha256_of_file(path)
            if actual != entry["sha256"]:
                raise PreparedDataError(
                    f"{path}: sha256 {actual} does not match the manifest's {entry['sha256']}; "
                    "the file is corrupted or was changed after preparation - delete the folder and prepare again"
                )
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:
            raise PreparedDataError(f"{path}: unreadable as .npy ({error})") from None
        if list(array.shape) != entry["shape"] or str(array.dtype) != entry["dtype"]:
            raise PreparedDataError(
                f"{path}: {array.dtype}{list(array.shape)} does not match the manifest's {entry['dtype']}{entry['shape']}"
            )
        arrays[name] = array
    for split in ("train", "validation"):
        labels = arrays[f"{split}_labels"]
        if len(labels) != len(arrays[f"{split}_images"]):
            raise PreparedDataError(
                f"{folder}: {split} has {len(arrays[f'{split}_images'])} images but {len(labels)} labels"
            )
        if len(labels) and (
            labels.min() < 0 or labels.max() >= manifest["num_classes"]
        ):
            raise PreparedDataError(
                f"{folder / manifest['arrays'][f'{split}_labels']['file']}: labels outside [0, {manifest['num_classes']})"
            )
    return manifest, arrays
