"""The prepared-data format: streamed, hashed, atomic, and verified on open."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from smoothbench import files
from smoothbench.data import array_store
from smoothbench.data.preparation import prepare, square_image
from smoothbench.tools.data import main as cli_main


def test_streaming_writer_round_trips_and_hashes_what_it_wrote(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(37, 5, 4, 3), dtype=np.uint8)
    writer = array_store.StreamingArrayWriter(tmp_path / "a.npy", array.shape, np.uint8)
    for start in range(0, 37, 10):
        writer.write(array[start : start + 10])
    digest = writer.close()
    assert digest == files.sha256_of_file(tmp_path / "a.npy")
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(loaded, array)


def test_streaming_writer_refuses_wrong_row_counts(tmp_path):
    writer = array_store.StreamingArrayWriter(tmp_path / "b.npy", (4, 2), np.int32)
    writer.write(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="wrote 3 rows, announced 4"):
        writer.close()
    writer = array_store.StreamingArrayWriter(tmp_path / "c.npy", (2, 2), np.int32)
    with pytest.raises(ValueError, match="more than the 2 rows"):
        writer.write(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="rows of shape"):
        writer.write(np.zeros((1, 3)))


def test_json_is_replaced_atomically_with_normal_permissions(tmp_path):
    path = tmp_path / "x" / "record.json"
    files.write_json_atomic(path, {"a": 1})
    files.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]
    assert path.stat().st_mode & 0o044  # readable by others, unlike mkstemp's 0600


def test_a_temporary_file_left_by_a_killed_writer_is_removed_by_the_next_write(
    tmp_path,
):
    path = tmp_path / "plot.png"
    stale = tmp_path / ".plot.png.k1ll3d.tmp"  # what a SIGKILLed atomic_file leaves
    stale.write_bytes(b"")
    # another file's writer: not ours to remove
    other = tmp_path / ".other.png.k1ll3d.tmp"
    other.write_bytes(b"")
    with files.atomic_file(path, "wb") as stream:
        stream.write(b"png")
    assert path.read_bytes() == b"png" and not stale.exists() and other.exists()


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, monkeypatch):
    import errno

    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(array_store.os, "fsync", full)
    path = tmp_path / "tables" / "table3.csv"
    with pytest.raises(
        files.StorageError,
        match=r"tables/table3.csv: could not be written \(No space left on device\)",
    ):
        files.write_json_atomic(path, {"a": 1})
    assert not path.exists() and not list(path.parent.iterdir())
    writer = array_store.StreamingArrayWriter(
        tmp_path / "train_images.npy", (1, 2), np.uint8
    )
    writer.write(np.zeros((1, 2)))
    with pytest.raises(
        files.StorageError, match=r"train_images.npy: could not be written"
    ):
        writer.close()


@pytest.fixture
def digits_folder(tmp_path):
    settings = {
        "dataset": "digits",
        "validation_fraction": 0.2,
        "splits": {},
        "mock": {"enabled": False},
    }
    folder = tmp_path / "digits"
    prepare(settings, folder)
    return folder


def test_prepared_digits_open_memory_mapped(digits_folder):
    manifest, arrays = array_store.open_prepared(digits_folder)
    assert manifest["num_classes"] == 10
    assert arrays["train_images"].shape == (1437, 8, 8, 1) and arrays[
        "validation_images"
    ].shape == (360, 8, 8, 1)
    assert isinstance(arrays["train_images"], np.memmap)
    assert (
        arrays["train_images"].dtype == np.uint8 and arrays["train_images"].max() == 255
    )
    expected_mean = (
        np.asarray(arrays["train_images"], dtype=np.float64).mean(axis=0) / 255.0
    )
    np.testing.assert_allclose(arrays["mean"], expected_mean, atol=1e-6)
    assert arrays["mean"].dtype == np.float32
    assert sum(manifest["splits"]["train"]["class_counts"]) == 1437
    assert not list(digits_folder.glob(".staging-*"))


def test_corrupted_array_is_detected_by_its_sha256(digits_folder, capsys):
    path = digits_folder / "train_images.npy"
    with open(path, "r+b") as handle:
        handle.seek(-1, os.SEEK_END)
        last = handle.read(1)
        handle.seek(-1, os.SEEK_END)
        handle.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(
        array_store.PreparedDataError,
        match=r"train_images\.npy: sha256 .* does not match",
    ):
        array_store.open_prepared(digits_folder)
    assert cli_main(["verify", str(digits_folder)]) == 1
    assert "train_images.npy" in capsys.readouterr().err


def test_missing_manifest_or_array_and_bad_labels_are_detected(digits_folder):
    manifest = json.loads((digits_folder / "manifest.json").read_text())
    (digits_folder / "mean.npy").unlink()
    with pytest.raises(
        array_store.PreparedDataError, match=r"mean\.npy: listed in .* but missing"
    ):
        array_store.open_prepared(digits_folder)
    (digits_folder / "manifest.json").unlink()
    with pytest.raises(array_store.PreparedDataError, match="no manifest"):
        array_store.open_prepared(digits_folder)
    # a manifest whose shape disagrees with the file
    manifest["arrays"].pop("mean")
    manifest["arrays"]["train_labels"]["shape"] = [5]
    (digits_folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        array_store.PreparedDataError,
        match=r"train_labels\.npy: int32\[1437\] does not match",
    ):
        array_store.open_prepared(digits_folder, verify_checksums=False)


KILLED_PREPARE = """
import os, signal, sys
from smoothbench.data import array_store
from smoothbench.data.preparation import prepare
original = array_store.StreamingArrayWriter.write
def write_then_die(self, rows):
    original(self, rows)
    if self.path.name == "validation_images.npy":
        os.kill(os.getpid(), signal.SIGKILL)
array_store.StreamingArrayWriter.write = write_then_die
prepare({"dataset": "digits", "validation_fraction": 0.2, "splits": {}, "mock": {"enabled": False}}, sys.argv[1])
"""


def test_a_prepare_killed_mid_write_leaves_nothing_that_looks_finished(tmp_path):
    folder = tmp_path / "digits"
    process = subprocess.run(
        [sys.executable, "-c", KILLED_PREPARE, str(folder)],
        capture_output=True,
        text=True,
    )
    assert process.returncode == -signal.SIGKILL
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == []
    # it really was killed mid-way
    assert list(folder.glob(".staging-*/train_images.npy"))
    with pytest.raises(array_store.PreparedDataError, match="no manifest"):
        array_store.open_prepared(folder)
    # the next run cleans the stale staging folder and publishes a complete dataset
    prepare(
        {
            "dataset": "digits",
            "validation_fraction": 0.2,
            "splits": {},
            "mock": {"enabled": False},
        },
        folder,
    )
    assert not list(folder.glob(".staging-*"))
    array_store.open_prepared(folder)


def test_center_crop_keeps_the_central_square_of_a_72_px_image():
    image = np.random.default_rng(1).integers(0, 256, size=(72, 100, 3), dtype=np.uint8)
    out = square_image(image, 72, "center_crop").numpy()
    np.testing.assert_array_equal(out, image[:, 14:86, :])
    tall = np.random.default_rng(2).integers(0, 256, size=(90, 72, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        square_image(tall, 72, "center_crop").numpy(), tall[9:81]
    )


def test_square_methods_shapes_and_identity():
    rng = np.random.default_rng(3)
    square = rng.integers(0, 256, size=(72, 72, 3), dtype=np.uint8)
    for method in ("center_crop", "resize"):
        np.testing.assert_array_equal(square_image(square, 72, method).numpy(), square)
    small = rng.integers(0, 256, size=(17, 30, 3), dtype=np.uint8)
    for method in ("center_crop", "resize"):
        out = square_image(small, 32, method).numpy()
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    flat = np.full((36, 80, 3), 200, dtype=np.uint8)  # a constant image stays constant
    assert (square_image(flat, 72, "resize").numpy() == 200).all()
    with pytest.raises(ValueError, match="unknown square_method"):
        square_image(small, 32, "pad")
