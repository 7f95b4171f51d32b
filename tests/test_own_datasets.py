"""A study on datasets of its own (config key ``datasets``) through the real workflow:
folders of real images (Debian's Fashion-MNIST files written as PNGs) and a TFDS
builder that is not in the registry (under tfds.testing.mock_data)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import FASHION_MNIST_DIR, REPORT_ON, run_workflow
from PIL import Image

from smoothbench.config import ConfigError, validate_config
from smoothbench.data import array_store, own_datasets
from smoothbench.data.download import MOCK_DATA_VARIABLE, download
from smoothbench.data.preparation import prepare
from smoothbench.methods import gamma_grid
from smoothbench.study import load_study
from smoothbench.tools import cost_estimate
from smoothbench.tools import data as data_tool

FASHION_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
)
TINY_PROTOCOL = {
    "model": "resnet_v1",
    "depth": 8,
    "epochs": 1,
    "pooling": "global",
    "min_image_size": 0,
    "augmentation": {"horizontal_flip": False},
}


def _fashion(part: str) -> tuple[np.ndarray, np.ndarray]:
    """Debian's Fashion-MNIST ``part`` (train or t10k): uint8 images and labels."""
    if not (FASHION_MNIST_DIR / f"{part}-images-idx3-ubyte.gz").is_file():
        pytest.fail(
            f"{FASHION_MNIST_DIR} lacks Fashion-MNIST: `apt-get install dataset-fashion-mnist` "
            "(or set FASHION_MNIST_DIR)"
        )
    with gzip.open(FASHION_MNIST_DIR / f"{part}-images-idx3-ubyte.gz") as stream:
        images = np.frombuffer(stream.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION_MNIST_DIR / f"{part}-labels-idx1-ubyte.gz") as stream:
        labels = np.frombuffer(stream.read(), np.uint8, offset=8)
    return images, labels


def _write_classes(folder, images, labels, classes, per_class, skip=0):
    """``per_class`` images of each of ``classes`` (Fashion-MNIST names) as PNG files."""
    for name in classes:
        label = FASHION_CLASSES.index(name)
        (folder / name).mkdir(parents=True)
        chosen = np.flatnonzero(labels == label)[skip : skip + per_class]
        for index in chosen:
            Image.fromarray(images[index], "L").save(folder / name / f"{index:05d}.png")


@pytest.fixture(scope="module")
def folder_study(tmp_path_factory):
    """Two folders of real images, trained one short run each through the default target:
    ``clothes``, all ten classes at 200 images each, split 80/20 by the study; ``shoes``,
    three classes with their own train/ (100 each) and validation/ (30 each)."""
    workdir = tmp_path_factory.mktemp("own-folders")
    test_images, test_labels = _fashion("t10k")
    _write_classes(workdir / "clothes", test_images, test_labels, FASHION_CLASSES, 200)
    shoes = ("sandal", "sneaker", "boot")
    train_images, train_labels = _fashion("train")
    _write_classes(workdir / "shoes" / "train", train_images, train_labels, shoes, 100)
    _write_classes(
        workdir / "shoes" / "validation", test_images, test_labels, shoes, 30, skip=500
    )
    config = {
        "results_folder": "results/own",
        "data": {"download": False},
        "datasets": {
            "clothes": {"folder": "clothes", "validation_fraction": 0.2},
            "shoes": {"folder": str(workdir / "shoes")},
        },
        "protocol": TINY_PROTOCOL,
        "seeds": [0],
        "experiments": {"clothes": {"gammas": [1.0]}, "shoes": {"gammas": [0.9]}},
    }
    process = run_workflow(workdir, config, "--cores", "2", env=REPORT_ON)
    assert process.returncode == 0, process.stdout
    return workdir, config


@pytest.mark.workflow
def test_an_own_data_study_gets_its_report_at_the_end_of_its_run(folder_study):
    """No --report flag: the run that completed the study wrote its report in the
    study's results folder, its front page naming the study's rows and its seed, with
    Table 3 of its own rows (neither is one of the paper's)."""
    from test_workflow_results import report_variable

    workdir, _ = folder_study
    report = workdir / "results" / "own" / "report.html"
    assert report.stat().st_size > 100_000
    front = report_variable(report, "workflow_desc")
    header = "This study: 2 data set rows\n(clothes, shoes), seed 0."
    assert header in front, front[:400]
    assert "Table 3: this study" in front and "<td>clothes</td>" in front
    assert "seeds ." not in front


@pytest.mark.workflow
def test_a_folder_of_pngs_is_downloaded_prepared_and_trained(folder_study):
    workdir, _ = folder_study
    results = workdir / "results" / "own"
    record = json.loads((results / "downloads" / "clothes.json").read_text())
    files = sorted(path for path in (workdir / "clothes").rglob("*.png"))
    assert len(files) == 2000
    assert record["files"] == {
        path.relative_to(workdir / "clothes").as_posix(): hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        for path in files
    }
    manifest, arrays = array_store.open_prepared(results / "prepared" / "clothes")
    assert manifest["source"] == "folder" and manifest["num_classes"] == 10
    assert manifest["class_names"] == sorted(FASHION_CLASSES)
    assert manifest["image_shape"] == [28, 28, 1]
    assert manifest["splits"]["train"]["class_counts"] == [160] * 10
    assert manifest["splits"]["validation"]["class_counts"] == [40] * 10
    assert "stratified, seed 0" in manifest["splits"]["validation"]["split"]
    # the pixels are the files' own: every validation image is one of the PNGs
    originals = {
        np.asarray(Image.open(path)).tobytes(): path.parent.name for path in files
    }
    names = manifest["class_names"]
    for image, label in zip(
        arrays["validation_images"][:50], arrays["validation_labels"][:50]
    ):
        assert originals[image[..., 0].tobytes()] == names[label]
    # the folder with its own split keeps it
    shoes, _ = array_store.open_prepared(results / "prepared" / "shoes")
    assert shoes["class_names"] == ["boot", "sandal", "sneaker"]
    assert shoes["splits"]["train"]["count"] == 300
    assert shoes["splits"]["validation"]["class_counts"] == [30, 30, 30]
    for run in ("clothes/gamma~1.0", "shoes/gamma~0.9"):
        metrics = json.loads(
            (results / "runs" / run / "seed~0/metrics.json").read_text()
        )
        assert 0 <= metrics["best_val_accuracy"] <= 1


@pytest.mark.workflow
def test_the_tables_name_the_folder_datasets_as_not_the_papers(folder_study):
    workdir, _ = folder_study
    tables = workdir / "results" / "own" / "tables"
    with open(tables / "table2.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {(row["dataset"], row["num_classes"], row["value"]) for row in rows} == {
        ("clothes", "10", "1.0"),
        ("shoes", "3", "0.9"),
    }
    comparison = (tables / "comparison.md").read_text()
    for name in ("clothes", "shoes"):
        assert re.search(
            rf"{name}: the image folder \S+{name} .*not one of the paper's data sets",
            comparison,
        ), comparison
    assert "| clothes |" in (tables / "table2.md").read_text()


def _run_times(results):
    return {
        path.relative_to(results).as_posix(): path.stat().st_mtime_ns
        for pattern in ("prepared/*/manifest.json", "runs/*/*/*/metrics.json")
        for path in results.glob(pattern)
    }


@pytest.mark.workflow
def test_a_changed_image_prepares_and_trains_its_dataset_again_and_nothing_else(
    folder_study,
):
    workdir, config = folder_study
    results = workdir / "results" / "own"
    before = _run_times(results)
    # touched, not changed: nothing to do
    touched = sorted((workdir / "shoes" / "train" / "boot").iterdir())[0]
    touched.touch()
    process = run_workflow(workdir, config, "--cores", "2")
    assert process.returncode == 0, process.stdout
    assert _run_times(results) == before
    # one pixel of one clothes image changed: clothes again, shoes untouched
    changed = sorted((workdir / "clothes" / "bag").iterdir())[0]
    image = np.asarray(Image.open(changed)).copy()
    image[0, 0] = 255 - image[0, 0]
    Image.fromarray(image, "L").save(changed)
    process = run_workflow(workdir, config, "--cores", "2")
    assert process.returncode == 0, process.stdout
    after = _run_times(results)
    assert {key for key in before if after[key] != before[key]} == {
        "prepared/clothes/manifest.json",
        "runs/clothes/gamma~1.0/seed~0/metrics.json",
    }
    record = json.loads((results / "downloads" / "clothes.json").read_text())
    relative = changed.relative_to(workdir / "clothes").as_posix()
    assert record["files"][relative] == hashlib.sha256(changed.read_bytes()).hexdigest()


@pytest.mark.workflow
def test_a_tfds_builder_outside_the_registry_under_mock_data(tmp_path):
    """oxford_flowers102 (K = 102, images of varying sizes) through download and
    prepare with TFDS's mock data, which the test switches on; stl10 (K = 10) planned
    with the gamma grid its K gives (gamma > 1/10 drops 0.1)."""
    config = {
        "results_folder": "results/own",
        "data": {"tfds_data_dir": str(tmp_path / "tfds"), "download": False},
        "datasets": {
            "flowers": {"tfds": "oxford_flowers102", "image_size": 24},
            "stl": {"tfds": "stl10", "validation_split": "test"},
        },
        "protocol": TINY_PROTOCOL,
        "seeds": [0],
        "experiments": {"flowers": {}, "stl": {}},
    }
    study = load_study(config)
    assert study.dataset("flowers").num_classes == 102
    assert study.experiments["stl"].image_shape == (96, 96, 3)
    assert study.experiments["flowers"].image_shape == (24, 24, 3)
    assert study.experiments["stl"].gammas == tuple(gamma_grid(10))
    assert 0.1 not in study.experiments["stl"].gammas
    assert study.experiments["flowers"].gammas == tuple(gamma_grid(102))
    assert 0.1 in study.experiments["flowers"].gammas

    process = run_workflow(
        tmp_path, config, "--cores", "2", "--until", "prepare",
        env={MOCK_DATA_VARIABLE: "16"},
    )  # fmt: skip
    assert process.returncode == 0, process.stdout
    manifest, arrays = array_store.open_prepared(
        tmp_path / "results" / "own" / "prepared" / "flowers"
    )
    assert (
        manifest["mock_data"] is True and manifest["tfds_name"] == "oxford_flowers102"
    )
    assert manifest["num_classes"] == 102 and len(manifest["class_names"]) == 102
    assert arrays["train_images"].shape == (16, 24, 24, 3)
    assert arrays["validation_labels"].max() < 102

    process = run_workflow(tmp_path, config, "-n", env={MOCK_DATA_VARIABLE: "16"})
    assert process.returncode == 0, process.stdout
    planned = re.findall(
        r"wildcards: experiment=(\w+), method=gamma, value=([0-9.]+), seed=0",
        process.stdout,
    )
    for name, grid in (("stl", gamma_grid(10)), ("flowers", gamma_grid(102))):
        values = [float(value) for experiment, value in planned if experiment == name]
        assert sorted(values) == sorted(grid)


@pytest.mark.workflow  # its fixture, folder_study, runs the workflow
def test_cost_and_the_dataset_list_know_a_folder_before_it_is_prepared(
    folder_study, capsys
):
    workdir, config = folder_study
    config = json.loads(json.dumps(config))
    config["datasets"]["clothes"]["folder"] = str(workdir / "clothes")
    study = load_study(config)
    manifest = array_store.read_manifest(workdir / "results/own/prepared/clothes")
    train, validation, source = cost_estimate.split_sizes(study, "clothes", None)
    assert (train, validation) == (
        manifest["splits"]["train"]["count"],
        manifest["splits"]["validation"]["count"],
    )
    assert source == f"the image folder {workdir / 'clothes'}"
    config_file = workdir / "absolute.yaml"
    config_file.write_text(yaml.safe_dump(config))
    assert data_tool.main(["datasets", "--configfile", str(config_file)]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"^clothes +K=10 .*the study's own dataset$", listed, re.M)
    assert re.search(r"^shoes +K=3 ", listed, re.M)
    assert data_tool.main(["datasets"]) == 0
    assert "clothes" not in capsys.readouterr().out


def test_a_colour_folder_of_mixed_sizes_and_formats_is_brought_to_its_square(tmp_path):
    """RGB PNGs and JPEGs of several sizes, with image_size: the data stage's own
    functions (as the rules call them) square them by data.square_method."""
    generator = np.random.default_rng(0)
    sizes = [(20, 30), (40, 16), (16, 16)]
    for label, name in enumerate(("red", "green")):
        (tmp_path / "colour" / name).mkdir(parents=True)
        for index, (height, width) in enumerate(sizes):
            pixels = generator.integers(0, 60, (height, width, 3), dtype=np.uint8)
            pixels[..., label] += 150
            suffix = ".jpg" if index == 1 else ".png"
            Image.fromarray(pixels, "RGB").save(
                tmp_path / "colour" / name / f"{index}{suffix}"
            )
    config = {
        "datasets": {
            "colour": {
                "folder": str(tmp_path / "colour"),
                "validation_fraction": 0.33,
                "image_size": 16,
                "split_seed": 3,
            }
        },
        "experiments": {"colour": {"model": "resnet_v1", "depth": 20}},
    }
    study = load_study(config)
    assert study.experiments["colour"].image_shape == (16, 16, 3)
    assert study.experiments["colour"].gammas == tuple(gamma_grid(2))
    record = download(study.download_settings("colour"), study.network_settings())
    assert len(record["files"]) == 6 and record["channels"] == 3
    manifest = prepare(study.data_settings("colour"), tmp_path / "prepared", record)
    _, arrays = array_store.open_prepared(tmp_path / "prepared")
    assert manifest["image_shape"] == [16, 16, 3]
    assert manifest["settings"] == {"image_size": 16, "square_method": "center_crop"}
    assert manifest["splits"]["validation"]["class_counts"] == [1, 1]
    assert "seed 3" in manifest["splits"]["train"]["split"]
    images = np.concatenate([arrays["train_images"], arrays["validation_images"]])
    labels = np.concatenate([arrays["train_labels"], arrays["validation_labels"]])
    # each class keeps its colour through decoding, cropping and resizing; labels
    # follow the sorted folder names (green 0, red 1)
    assert manifest["class_names"] == ["green", "red"]
    channel = {"red": 0, "green": 1}
    means = images.reshape(len(images), -1, 3).mean(axis=1)
    expected = [channel[manifest["class_names"][label]] for label in labels]
    assert means.argmax(axis=1).tolist() == expected


@pytest.mark.parametrize(
    "section, value, advice",
    [
        ("source_dirs", "/data/sources", "which reads no registry source files"),
        ("splits", {"train": "train"}, "set its splits in 'datasets.mine'"),
    ],
)
def test_data_keys_of_registry_datasets_refuse_an_own_dataset(
    tmp_path, section, value, advice
):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for index in range(2):
            Image.new("L", (8, 8), index).save(tmp_path / name / f"{index}.png")
    config = {
        "data": {section: {"mine": value}},
        "datasets": {"mine": {"folder": str(tmp_path), "validation_fraction": 0.5}},
        "experiments": {"mine": {}},
    }
    with pytest.raises(ConfigError) as error:
        load_study(config)
    assert str(error.value).startswith(f"config key 'data.{section}.mine': mine ")
    assert advice in str(error.value)


def test_jobs_read_the_own_datasets_as_planned_without_tfds_or_the_folder(
    tmp_path, monkeypatch
):
    """The workflow hands its jobs the datasets it resolved (own_datasets.PLANNED_VARIABLE):
    a job in the results rules' environment (no tensorflow-datasets, no scikit-learn)
    loads the study though the folder is gone; without the hand-over it cannot."""
    folder = tmp_path / "cells"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for index in range(2):
            Image.new("L", (8, 8), index).save(folder / name / f"{index}.png")
    config = {
        "datasets": {
            "cells": {"folder": str(folder), "validation_fraction": 0.5},
            "flowers": {"tfds": "oxford_flowers102", "image_size": 16},
        },
        "experiments": {"cells": {}, "flowers": {}},
    }
    monkeypatch.chdir(tmp_path)  # where the workflow plans and its jobs run
    study = load_study(config)
    record = own_datasets.planned_record(study.config, study.dataset_specs)
    folder.rename(tmp_path / "moved")
    job = (
        "import json, sys\n"
        "for name in ('sklearn', 'tensorflow', 'tensorflow_datasets'):\n"
        "    sys.modules[name] = None\n"
        "from smoothbench.study import load_study\n"
        f"study = load_study(json.loads({json.dumps(json.dumps(config))}))\n"
        "print(json.dumps({name: study.dataset(name).definition() for name in ('cells', 'flowers')}))\n"
    )
    planned = {own_datasets.PLANNED_VARIABLE: record}

    def run_job(environment):
        return subprocess.run(
            [sys.executable, "-c", job],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, **environment},
        )

    process = run_job(planned)
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout) == {
        name: study.dataset(name).definition() for name in ("cells", "flowers")
    }
    process = run_job({own_datasets.PLANNED_VARIABLE: ""})
    assert process.returncode != 0 and "cells" in process.stderr
    # a changed entry is resolved anew, not taken from the hand-over
    config["datasets"]["cells"]["split_seed"] = 1
    with pytest.raises(ConfigError, match="is not a folder"):
        own_datasets.own_specs(validate_config(config), planned)
