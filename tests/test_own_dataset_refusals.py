"""A study's own dataset (config key ``datasets``) that cannot be used is refused by the
real workflow, with a message naming the config key or the file at fault, before
anything is prepared or trained.

One case per bad input. Each runs the Snakefile on a tiny study in its own folder;
the cases a test session selects run together in a small thread pool (a Snakemake
start is mostly waiting, not computing), and each test reads its own case's outcome.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import run_workflow
from PIL import Image

pytestmark = pytest.mark.workflow

RESULTS = Path("results") / "own"
PARALLEL_RUNS = 8


# --- tiny inputs -----------------------------------------------------------------------


def image(path: Path, size: int = 8, mode: str = "RGB", seed: int = 0) -> Path:
    """A small image of random pixels saved at ``path`` (PNG or JPEG by its suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(
        0, 256, (size, size, channels), dtype=np.uint8
    )
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return path


def image_folder(
    root: Path, classes=("a", "b"), count: int = 3, size: int = 8, mode: str = "RGB"
) -> Path:
    """``root/CLASS/i.png`` for each class: ``count`` images each."""
    for number, name in enumerate(classes):
        for index in range(count):
            image(root / name / f"{index}.png", size, mode, seed=10 * number + index)
    return root


def study(datasets: dict, experiment: str, data_dir: Path) -> dict:
    """The tiny study: one experiment, one gamma, one seed, an 8-layer ResNet."""
    return {
        "results_folder": str(RESULTS),
        "data": {"download": False, "tfds_data_dir": str(data_dir)},
        "protocol": {
            "model": "resnet_v1",
            "depth": 8,
            "epochs": 1,
            "pooling": "global",
            "min_image_size": 0,
        },
        "seeds": [0],
        "datasets": datasets,
        "experiments": {experiment: {"gammas": [1.0]}},
    }


def build_dummy_mnist(data_dir: Path) -> None:
    """TFDS's own test builder dummy_mnist (splits train and test, 20 random digits
    each) built offline in ``data_dir``; a builder TFDS then reads from its files."""
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tensorflow_datasets.testing import DummyMnist; "
            "DummyMnist(data_dir=sys.argv[1]).download_and_prepare()",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stdout + process.stderr


# --- the bad inputs --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad input: ``make(workdir)`` builds its files and returns (datasets, the
    dataset's name); ``culprits(workdir)`` the texts the failure's output must hold."""

    name: str
    stage: str  # planning, download or prepare: where the workflow refuses it
    make: Callable[[Path], tuple[dict, str]]
    culprits: Callable[[Path], list[str]]
    # prepare: what changes after a first run that stops after the download rule
    after_download: Callable[[Path], None] | None = None
    # what the message tells the user to do, done after the refusal; then the data
    # stage runs again (--until prepare) and must succeed
    advice: Callable[[Path], None] | None = None

    def __str__(self) -> str:
        return self.name


def folder(keys: dict | None = None):
    """Decorator: a case's make() for the folder dataset ``cells`` at workdir/cells,
    whose files the decorated function writes. Its entry: ``folder`` and
    validation_fraction 0.5, updated by ``keys`` (a key set to None is left out)."""

    def wrap(write):
        def make(workdir: Path) -> tuple[dict, str]:
            root = workdir / "cells"
            write(root)
            entry = {"folder": str(root), "validation_fraction": 0.5} | (keys or {})
            return {
                "cells": {
                    key: value for key, value in entry.items() if value is not None
                }
            }, "cells"

        return make

    return wrap


def tfds_entry(name: str, entry: dict, before=None):
    """A case's make() for the dataset ``name`` given by ``entry``; ``before(data dir)``
    first (to build a builder there)."""

    def make(workdir: Path) -> tuple[dict, str]:
        if before:
            before(workdir / "tfds")
        return {name: entry}, name

    return make


@folder()
def _empty_class(root):
    image_folder(root)
    (root / "c").mkdir()


@folder()
def _single_class(root):
    image_folder(root, classes=("a",), count=4)


@folder()
def _truncated_png(root):
    image_folder(root)
    path = image(root / "b" / "1.png", seed=7)  # as the others, but cut short
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@folder()
def _text_named_png(root):
    image_folder(root)
    (root / "b" / "x.png").write_text("not an image, only text\n")


@folder()
def _notes_in_class_folder(root):
    image_folder(root)
    (root / "a" / "notes.txt").write_text("taken on Monday\n")


@folder()
def _mixed_channels(root):
    image_folder(root, classes=("a",), mode="L")
    image_folder(root, classes=("b",), mode="RGB")


@folder()
def _differing_sizes(root):
    image_folder(root, size=8)
    image(root / "b" / "3.png", size=12)


@folder()
def _missing_folder(root):
    pass


@folder({"validation_fraction": None})
def _no_validation_fraction(root):
    image_folder(root)


@folder()
def _fraction_with_own_split(root):
    image_folder(root / "train")
    image_folder(root / "validation")


@folder({"validation_fraction": None})
def _split_folders_with_different_classes(root):
    image_folder(root / "train", classes=("a", "b"))
    image_folder(root / "validation", classes=("a", "c"))


@folder()
def _brace_in_a_file_name(root):
    image_folder(root)
    image(root / "b" / "x{seed}.png")


@folder()
def _huge_image(root):
    """A PNG whose header says 20000 x 20000 pixels (above PIL's decompression-bomb
    limit), after the first file."""
    image_folder(root)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (20000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    (root / "b" / "9.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    )


@folder()
def _rgba_image(root):
    image_folder(root)
    image(root / "b" / "3.png", mode="RGBA")


@folder()
def _loose_file(root):
    image_folder(root)
    image(root / "stray.png")


@folder({"validation_fraction": 0.1})
def _fraction_too_small(root):
    image_folder(root, classes=("a", "b", "c"))


@folder({"validation_fraction": 0.1})
def _small_class_without_validation(root):
    image_folder(root, classes=("a", "b"), count=40)
    image_folder(root, classes=("c",), count=2)


@folder({"validation_fraction": None})
def _loose_file_beside_split_folders(root):
    image_folder(root / "train")
    image_folder(root / "validation")
    image(root / "stray.png")


@folder()
def _symlink_loop(root):
    image_folder(root)
    (root / "b" / "loop.png").symlink_to("loop.png")  # after the first file


@folder()
def _dangling_symlink(root):
    image_folder(root)
    (root / "b" / "gone.png").symlink_to(root.parent / "elsewhere" / "gone.png")


@folder()
def _gif_named_png(root):
    """A GIF (palette, so it would convert to RGB) named .png, after the first file."""
    image_folder(root)
    Image.open(image(root / "b" / "3.png", seed=5)).save(root / "b" / "3.png", "GIF")


@folder()
def _bmp_named_jpg_first(root):
    """A BMP named .jpg, the first file (a/0.jpg before a/0.png): planning reads its header."""
    image_folder(root)
    Image.open(root / "a" / "0.png").save(root / "a" / "0.jpg", "BMP")


@folder()
def _good_folder(root):
    image_folder(root)


def _replaced_keeping_its_time(workdir: Path) -> None:
    """cells/b/1.png replaced by another image of the same size, its modification time
    kept (as cp -p or rsync -t of an older file does): Snakemake sees no newer input,
    so only the digests the download rule recorded can tell."""
    path = workdir / "cells" / "b" / "1.png"
    before = path.stat()
    image(path, seed=99)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


CASES = [
    Case(
        "empty_class_folder",
        "planning",
        _empty_class,
        lambda w: [f"class folder {w / 'cells' / 'c'} is empty"],
    ),
    Case(
        "single_class_folder",
        "planning",
        _single_class,
        lambda w: [f"{w / 'cells'} holds one class folder (a)", "at least two classes"],
    ),
    Case(
        "truncated_png",
        "download",
        _truncated_png,
        lambda w: [
            f"{w / 'cells' / 'b' / '1.png'} cannot be read as an image, it is damaged or cut short"
        ],
    ),
    Case(
        "text_named_png",
        "download",
        _text_named_png,
        lambda w: [f"{w / 'cells' / 'b' / 'x.png'} is not an image that can be read"],
    ),
    Case(
        "non_image_file_in_class_folder",
        "planning",
        _notes_in_class_folder,
        lambda w: [f"{w / 'cells' / 'a' / 'notes.txt'} is not a PNG or JPEG image"],
    ),
    Case(
        "mixed_grey_and_colour",
        "download",
        _mixed_channels,
        lambda w: [
            f"{w / 'cells'} mixes grey and colour images",
            f"{w / 'cells' / 'a' / '0.png'} is grey",
            f"{w / 'cells' / 'b' / '0.png'} is colour",
        ],
    ),
    Case(
        "differing_sizes_without_image_size",
        "download",
        _differing_sizes,
        lambda w: [
            "config key 'datasets.cells.image_size' is missing",
            f"{w / 'cells' / 'b' / '3.png'} is 12x12",
        ],
    ),
    Case(
        "missing_folder",
        "planning",
        _missing_folder,
        lambda w: [
            f"config key 'datasets.cells.folder': {w / 'cells'} is not a folder"
        ],
    ),
    Case(
        "no_validation_fraction",
        "planning",
        _no_validation_fraction,
        lambda w: ["config key 'datasets.cells.validation_fraction' is missing"],
    ),
    Case(
        "validation_fraction_with_own_split",
        "planning",
        _fraction_with_own_split,
        lambda w: [
            f"config key 'datasets.cells.validation_fraction': {w / 'cells'} has its own "
            "train/ and validation/"
        ],
    ),
    Case(
        "train_and_validation_with_different_classes",
        "planning",
        _split_folders_with_different_classes,
        lambda w: [
            f"{w / 'cells' / 'train'} and {w / 'cells' / 'validation'} hold different "
            "class folders (only in one of them: b, c)"
        ],
    ),
    Case(
        "brace_in_a_file_name",
        "planning",
        _brace_in_a_file_name,
        lambda w: [
            f"{w / 'cells' / 'b' / 'x{seed}.png'}: a name with {{ or }} cannot be an input"
        ],
    ),
    Case(
        "huge_image",
        "download",
        _huge_image,
        lambda w: [f"{w / 'cells' / 'b' / '9.png'} is too large to read"],
    ),
    Case(
        "rgba_image",
        "download",
        _rgba_image,
        lambda w: [
            f"{w / 'cells' / 'b' / '3.png'}: image mode RGBA has an alpha channel"
        ],
    ),
    Case(
        "loose_file_beside_the_class_folders",
        "planning",
        _loose_file,
        lambda w: [
            f"{w / 'cells' / 'stray.png'} lies in {w / 'cells'} outside any class folder"
        ],
    ),
    Case(
        "validation_fraction_too_small",
        "planning",
        _fraction_too_small,
        lambda w: [
            "config key 'datasets.cells.validation_fraction': 0.1 holds out 1 of the 9 images"
        ],
    ),
    Case(
        "small_class_left_without_validation",
        "planning",
        _small_class_without_validation,
        lambda w: [
            "config key 'datasets.cells.validation_fraction': the stratified split of "
            f"{w / 'cells'} holding out 0.1 (split_seed 0) leaves the class folder "
            f"{w / 'cells' / 'c'} (2 images) no validation image"
        ],
    ),
    Case(
        "loose_file_beside_train_and_validation",
        "planning",
        _loose_file_beside_split_folders,
        lambda w: [
            f"{w / 'cells' / 'stray.png'} lies in {w / 'cells'} beside its train/ and "
            "validation/ folders"
        ],
    ),
    Case(
        "symlink_loop_in_a_class_folder",
        "planning",
        _symlink_loop,
        lambda w: [f"{w / 'cells' / 'b' / 'loop.png'} is a symbolic link in a loop"],
    ),
    Case(
        "symlink_to_nothing_in_a_class_folder",
        "planning",
        _dangling_symlink,
        lambda w: [
            f"{w / 'cells' / 'b' / 'gone.png'} is a symbolic link to "
            f"{w / 'elsewhere' / 'gone.png'}, which does not exist"
        ],
    ),
    Case(
        "gif_named_png",
        "download",
        _gif_named_png,
        lambda w: [
            f"{w / 'cells' / 'b' / '3.png'} holds GIF data, not the PNG its name says"
        ],
    ),
    Case(
        "bmp_named_jpg_read_at_planning",
        "planning",
        _bmp_named_jpg_first,
        lambda w: [
            f"{w / 'cells' / 'a' / '0.jpg'} holds BMP data, not the JPEG its name says"
        ],
    ),
    Case(
        "file_changed_after_the_download_rule",
        "prepare",
        _good_folder,
        lambda w: [
            f"{w / 'cells' / 'b' / '1.png'} changed after the download rule recorded it",
            "touch it and run the workflow again",
        ],
        after_download=_replaced_keeping_its_time,
        advice=lambda w: (w / "cells" / "b" / "1.png").touch(),
    ),
    Case(
        "registry_name_redefined",
        "planning",
        tfds_entry("cifar10", {"tfds": "cifar10"}),
        lambda w: [
            "config key 'datasets.cifar10': cifar10 is a dataset of smoothbench's registry"
        ],
    ),
    Case(
        "builder_without_images",
        "planning",
        tfds_entry("reviews", {"tfds": "imdb_reviews"}),
        lambda w: [
            "config key 'datasets.reviews.tfds': imdb_reviews is not an image classification set",
            "no Image feature 'image'",
        ],
    ),
    Case(
        "builder_tfds_lacks",
        "planning",
        tfds_entry("mine", {"tfds": "no_such_builder_anywhere"}),
        lambda w: [
            "config key 'datasets.mine.tfds': TFDS has no builder 'no_such_builder_anywhere'"
        ],
    ),
    Case(
        "varying_sizes_without_image_size",
        "planning",
        tfds_entry("flowers", {"tfds": "oxford_flowers102"}),
        lambda w: [
            "config key 'datasets.flowers.image_size' is missing",
            "the images of oxford_flowers102 vary in size",
        ],
    ),
    Case(
        "split_the_built_builder_lacks",
        "planning",
        tfds_entry("numerals", {"tfds": "dummy_mnist"}, before=build_dummy_mnist),
        lambda w: [
            "config key 'datasets.numerals.validation_split': dummy_mnist has no split 'validation'",
            "its splits: test, train",
        ],
    ),
    Case(
        "sliced_split_the_built_builder_lacks",
        "planning",
        tfds_entry(
            "numerals",
            {
                "tfds": "dummy_mnist",
                "train_split": "train[:50%]+extra",
                "validation_split": "test",
            },
            before=build_dummy_mnist,
        ),
        lambda w: [
            "config key 'datasets.numerals.train_split': dummy_mnist has no split 'extra'"
        ],
    ),
    Case(
        "both_tfds_and_folder",
        "planning",
        tfds_entry("mine", {"tfds": "mnist", "folder": "cells"}),
        lambda w: [
            "config key 'datasets.mine': give exactly one of 'tfds'",
            "it has tfds and folder",
        ],
    ),
    Case(
        "neither_tfds_nor_folder",
        "planning",
        tfds_entry("mine", {"image_size": 32}),
        lambda w: [
            "config key 'datasets.mine': give exactly one of 'tfds'",
            "it has neither",
        ],
    ),
    Case(
        "folder_key_on_a_tfds_dataset",
        "planning",
        tfds_entry("mine", {"tfds": "mnist", "validation_fraction": 0.2}),
        lambda w: [
            "config key 'datasets.mine.validation_fraction': a tfds dataset has no validation_fraction"
        ],
    ),
]


# --- running them ----------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """One case's refused run, and what it left behind (read before any later run)."""

    name: str  # the dataset's
    process: subprocess.CompletedProcess
    download_record: bool
    prepared: list[str]  # manifest.json and .npy files in the dataset's prepared folder
    metrics: list[str]  # metrics.json files under the runs folder
    advice: subprocess.CompletedProcess | None = None  # the message's advice, followed


def _run(case: Case, workdir: Path) -> Outcome:
    datasets, name = case.make(workdir)
    config = study(datasets, name, workdir / "tfds")
    if case.after_download:
        first = run_workflow(
            workdir, config, "--cores", "1", "--until", "download", timeout=600
        )
        assert first.returncode == 0, first.stdout
        case.after_download(workdir)
    process = run_workflow(workdir, config, "--cores", "1", timeout=600)
    results = workdir / RESULTS
    prepared = results / "prepared" / name
    outcome = Outcome(
        name,
        process,
        (results / "downloads" / f"{name}.json").exists(),
        sorted(
            path.name
            for path in [prepared / "manifest.json", *prepared.glob("*.npy")]
            if path.exists()
        ),
        sorted(str(path) for path in (results / "runs").rglob("metrics.json")),
    )
    if case.advice:
        case.advice(workdir)
        outcome.advice = run_workflow(
            workdir, config, "--cores", "1", "--until", "prepare", timeout=600
        )
    return outcome


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """case name -> (workdir, future of its Outcome), for the cases this session runs,
    all started at once."""
    selected = {
        item.callspec.params["case"].name
        for item in request.session.items
        if item.module is request.module
        and "case" in getattr(getattr(item, "callspec", None), "params", {})
    }
    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        started = {}
        for case in CASES:
            if case.name in selected:
                workdir = tmp_path_factory.mktemp(case.name)
                started[case.name] = (workdir, pool.submit(_run, case, workdir))
        yield started


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_workflow_refuses(case, outcomes):
    workdir, future = outcomes[case.name]
    outcome = future.result()
    output = outcome.process.stdout
    # 1. it fails
    assert outcome.process.returncode != 0, output
    # 2. naming the culprit (the config key, or the file or folder)
    for culprit in case.culprits(workdir):
        assert culprit in output, f"{culprit!r} not in:\n{output}"
    # at the stage that can tell: planning (no job runs), the download or prepare rule
    if case.stage == "planning":
        assert "rule download:" not in output, output
    else:
        assert f"Error in rule {case.stage}" in output, output
    if case.stage == "download":
        assert not outcome.download_record
    # 3. nothing prepared, nothing trained
    assert outcome.prepared == []
    assert outcome.metrics == []
    # the way out the message gives works
    if case.advice:
        assert outcome.advice.returncode == 0, outcome.advice.stdout
        assert (
            workdir / RESULTS / "prepared" / outcome.name / "manifest.json"
        ).exists()


def test_the_download_rule_refuses_a_split_of_a_builder_built_after_planning(
    tmp_path, monkeypatch
):
    """A builder not built at planning has no known splits there; once the download
    rule has it built, the rule checks the split names and stops. Offline no workflow
    run gets there (a builder built at planning is refused at planning, see
    split_the_built_builder_lacks; download: false stops one that is not built), so
    this calls the rule's function: planning sees TFDS's dummy_mnist unbuilt (TFDS
    registers no such test builder by name: the one lookup replaced), then it is built
    offline, as a download would, and the rule reads it from the data dir."""
    from tensorflow_datasets.testing import DummyMnist

    from smoothbench.data import own_datasets
    from smoothbench.data.download import DownloadError, download
    from smoothbench.study import load_study

    data_dir = tmp_path / "tfds"
    monkeypatch.setattr(
        own_datasets,
        "builder_info",
        lambda name, directory: DummyMnist(data_dir=directory).info,
    )
    config = study(
        {"numerals": {"tfds": "dummy_mnist", "validation_split": "valid[:50%]"}},
        "numerals",
        data_dir,
    )
    planned = load_study(config)  # not built: its splits unknown, nothing refused
    settings = planned.download_settings("numerals")
    monkeypatch.undo()
    DummyMnist(data_dir=str(data_dir)).download_and_prepare()
    with pytest.raises(DownloadError) as refused:
        download(settings, planned.network_settings())
    assert str(refused.value) == (
        "config key 'datasets.numerals.validation_split': dummy_mnist has no split "
        "'valid'; its splits: test, train"
    )
