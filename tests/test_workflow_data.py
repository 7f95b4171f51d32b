"""The data stage through the real Snakefile, rules and scripts a user runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import FASHION_MNIST_DIR, REPOSITORY, SNAKEMAKE, run_workflow

from smoothbench.data import array_store
from smoothbench.data.download import MOCK_DATA_VARIABLE
from smoothbench.data.registry import PAPER_DATASETS

pytestmark = pytest.mark.workflow


def planned_jobs(output: str) -> list[tuple[str, str | None]]:
    """(rule, dataset wildcard) for every job block of a dry run's output."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", output):
        match = re.search(r"^(?:local)?rule (\w+):", block, re.MULTILINE)
        if match:
            wildcard = re.search(r"wildcards: dataset=(\S+)", block)
            jobs.append((match.group(1), wildcard.group(1) if wildcard else None))
    return jobs


def test_lint_is_clean():
    process = subprocess.run(
        [SNAKEMAKE, "--lint"], cwd=REPOSITORY, capture_output=True, text=True
    )
    assert process.returncode == 0, process.stdout + process.stderr
    assert (
        "Congratulations, your workflow is in a good condition!"
        in process.stdout + process.stderr
    )


def test_snakefmt_formatting():
    snakefmt = str(Path(SNAKEMAKE).with_name("snakefmt"))
    files = [
        "Snakefile",
        *map(str, sorted((REPOSITORY / "workflow" / "rules").glob("*.smk"))),
    ]
    process = subprocess.run(
        [snakefmt, "--check", *files], cwd=REPOSITORY, capture_output=True, text=True
    )
    assert process.returncode == 0, process.stdout + process.stderr


def test_dry_run_of_the_shipped_config_plans_the_papers_data_stage(tmp_path):
    process = run_workflow(tmp_path, None, "--dry-run")
    assert process.returncode == 0, process.stdout
    jobs = planned_jobs(process.stdout)
    expected = sorted(
        [("download", name) for name in PAPER_DATASETS]
        + [("prepare", name) for name in PAPER_DATASETS]
    )
    results_rules = (
        "collect_runs",
        "aggregate",
        "plot_summary",
        "plot_training_curves",
        "plot_reliability",
        "front_page",
    )
    assert (
        sorted(job for job in jobs if job[0] not in ("all", "train", *results_rules))
        == expected
    )
    assert sum(1 for job in jobs if job[0] == "train") == 108
    # the results stage: one runs.csv, one aggregation, one summary plot, training
    # curves and reliability per experiment, one front page
    assert [sum(1 for job in jobs if job[0] == rule) for rule in results_rules] == [
        1,
        1,
        1,
        13,
        13,
        1,
    ]
    assert not [
        job for job in jobs if job[0] in ("train_lspp", "plot_c_matrix")
    ]  # the paper's study: gamma only
    assert [job for job in jobs if job[0] == "all"] == [("all", None)]
    # imagenet12 is prepared once for its two experiments
    assert sum(1 for job in jobs if job == ("prepare", "imagenet12")) == 1


MOCK_DATASETS = ["mnist", "cifar10", "dtd", "daimlerpedcls"]


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mock")
    config = {
        "data": {
            "tfds_data_dir": str(workdir / "tfds"),
            "download": False,
        },
        "experiments": {
            "mnist": {"model": "resnet_v1", "depth": 20},
            "cifar10": {},
            "dtd": {},
            "daimlerpedcls": {},
        },
    }
    process = run_workflow(
        workdir,
        config,
        "--cores",
        "2",
        "--until",
        "prepare",
        env={MOCK_DATA_VARIABLE: "24"},
    )
    assert process.returncode == 0, process.stdout
    return workdir


@pytest.mark.parametrize("dataset", MOCK_DATASETS)
def test_mock_tfds_data_prepared_through_the_real_rules(mock_run, dataset):
    folder = mock_run / "results" / "prepared" / dataset
    manifest, arrays = array_store.open_prepared(folder)
    shape = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}.get(dataset, (72, 72, 3))
    K = {"dtd": 47, "daimlerpedcls": 2}.get(dataset, 10)
    assert manifest["mock_data"] is True and manifest["num_classes"] == K
    for split in ("train", "validation"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        assert images.shape == (24, *shape) and images.dtype == np.uint8
        assert labels.shape == (24,) and labels.dtype == np.int32
        assert labels.min() >= 0 and labels.max() < K
    assert arrays["mean"].shape == shape and arrays["mean"].dtype == np.float32
    record = json.loads(
        (mock_run / "results" / "downloads" / f"{dataset}.json").read_text()
    )
    assert record["mode"] == "mock"


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_prepared_arrays_and_mean_equal_an_independent_tfds_read(mock_run, dataset):
    import tensorflow_datasets as tfds

    _, arrays = array_store.open_prepared(mock_run / "results" / "prepared" / dataset)
    with tfds.testing.mock_data(num_examples=24):
        data = tfds.load(
            dataset,
            split="train",
            data_dir=str(mock_run / "tfds"),
            as_supervised=True,
            shuffle_files=False,
        )
        pairs = list(tfds.as_numpy(data))
    images = np.stack([image for image, _ in pairs])
    labels = np.array([label for _, label in pairs])
    np.testing.assert_array_equal(arrays["train_images"], images)
    np.testing.assert_array_equal(arrays["train_labels"], labels)
    np.testing.assert_allclose(
        arrays["mean"], images.astype(np.float64).mean(axis=0) / 255.0, atol=1e-6
    )


@pytest.mark.parametrize("dataset", ["dtd", "daimlerpedcls"])
def test_decathlon_mean_is_the_mean_of_the_square_training_images(mock_run, dataset):
    _, arrays = array_store.open_prepared(mock_run / "results" / "prepared" / dataset)
    expected = np.asarray(arrays["train_images"], dtype=np.float64).mean(axis=0) / 255.0
    np.testing.assert_allclose(arrays["mean"], expected, atol=1e-6)
    assert arrays["train_images"].std() > 10  # real (random) pixels, not padding


def _dry_run_jobs(workdir: Path, config: dict) -> list[tuple[str, str | None]]:
    # the study mock_run prepared, mock data and all (the switch is part of what the
    # data depends on: without it, every dataset would be downloaded and prepared again)
    process = run_workflow(
        workdir,
        config,
        "--dry-run",
        "--until",
        "prepare",
        env={MOCK_DATA_VARIABLE: "24"},
    )
    assert process.returncode == 0, process.stdout
    return sorted(job for job in planned_jobs(process.stdout) if job[0] != "all")


def test_only_settings_that_change_the_data_replan_jobs(mock_run):
    config = yaml.safe_load((mock_run / "config.test.yaml").read_text())
    assert _dry_run_jobs(mock_run, config) == []
    # the mock switch off: real data, so every dataset is downloaded and prepared again
    without = run_workflow(mock_run, config, "--dry-run", "--until", "prepare")
    assert without.returncode == 0 and len(planned_jobs(without.stdout)) > 1
    # network settings change nothing that was computed: nothing to redo
    config["data"].update(download=True, network_timeout_seconds=2)
    assert _dry_run_jobs(mock_run, config) == []
    # a new square size redoes the Decathlon preparations only
    config["data"]["image_size"] = 64
    assert _dry_run_jobs(mock_run, config) == [
        ("prepare", "daimlerpedcls"),
        ("prepare", "dtd"),
    ]
    # the split read for mnist validation redoes mnist only
    config["data"]["image_size"] = 72
    config["data"]["splits"] = {"mnist": {"train": "train", "validation": "train[:10]"}}
    assert _dry_run_jobs(mock_run, config) == [("prepare", "mnist")]


def test_fashion_mnist_built_offline_from_debians_files(tmp_path):
    assert (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(), (
        f"{FASHION_MNIST_DIR} lacks Fashion-MNIST: `apt-get install dataset-fashion-mnist` "
        "(or set FASHION_MNIST_DIR to a folder with the four IDX files)"
    )
    config = {
        "data": {
            "tfds_data_dir": str(tmp_path / "tfds"),
            "download": False,
            "source_dirs": {"fashion_mnist": str(FASHION_MNIST_DIR)},
        },
        "experiments": {"fashion_mnist": {"model": "resnet_v1", "depth": 20}},
    }
    process = run_workflow(tmp_path, config, "--cores", "2", "--until", "prepare")
    assert process.returncode == 0, process.stdout
    manifest, arrays = array_store.open_prepared(
        tmp_path / "results" / "prepared" / "fashion_mnist"
    )
    assert arrays["train_images"].shape == (60000, 28, 28, 1)
    assert arrays["validation_images"].shape == (10000, 28, 28, 1)
    assert np.bincount(arrays["train_labels"]).tolist() == [6000] * 10
    assert np.bincount(arrays["validation_labels"]).tolist() == [1000] * 10
    assert (
        manifest["class_names"][0] == "T-shirt/top" and manifest["mock_data"] is False
    )
    # real clothes on black, not noise (~127)
    assert 60 < arrays["train_images"].mean() < 90
    record = json.loads(
        (tmp_path / "results" / "downloads" / "fashion_mnist.json").read_text()
    )
    assert record["mode"] == "source-dir" and record["splits"] == {
        "train": 60000,
        "test": 10000,
    }


def _offline_prefix():
    """Run in a network namespace with no interfaces where the kernel allows it."""
    if (
        shutil.which("unshare")
        and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode
        == 0
    ):
        return ("unshare", "-rn"), {}
    # Otherwise aim the reachability probe at a closed local port: the same code path.
    return (), {"SMOOTHBENCH_NETWORK_PROBE": "127.0.0.1:9"}


def test_missing_dataset_without_network_fails_fast_and_says_what_to_fetch(tmp_path):
    prefix, env = _offline_prefix()
    config = {
        "data": {"tfds_data_dir": str(tmp_path / "tfds"), "network_timeout_seconds": 5},
        "experiments": {"cifar10": {}},
    }
    started = time.monotonic()
    process = run_workflow(tmp_path, config, "--cores", "1", prefix=prefix, env=env)
    elapsed = time.monotonic() - started
    assert process.returncode != 0
    # Fails within seconds of its probe (network_timeout_seconds 5), not after a
    # download's retries: about 20 s on an idle 2-core machine, whose start-up a busy or
    # slow one may take several times longer.
    assert elapsed < 240, f"took {elapsed:.0f} s"
    output = process.stdout
    assert "dataset 'cifar10' (cifar10) is not built in the TFDS data dir" in output
    assert "cannot connect to" in output
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz" in output
    assert "source_dirs:" in output and "cifar10: /path/to/that/folder" in output
    assert not (tmp_path / "results" / "downloads" / "cifar10.json").exists()
    assert not (tmp_path / "results" / "prepared").exists()


def test_downloads_switched_off_fail_at_once(tmp_path):
    config = {
        "data": {"tfds_data_dir": str(tmp_path / "tfds"), "download": False},
        "experiments": {"mnist": {"model": "resnet_v1", "depth": 20}},
    }
    process = run_workflow(tmp_path, config, "--cores", "1")
    assert process.returncode != 0
    assert (
        "downloads are switched off (config key 'data.download' is false)"
        in process.stdout
    )
    assert "train-images-idx3-ubyte.gz" in process.stdout


def test_source_dir_missing_files_names_the_config_key(tmp_path):
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    config = {
        "data": {
            "tfds_data_dir": str(tmp_path / "tfds"),
            "source_dirs": {"mnist": str(tmp_path / "sources")},
        },
        "experiments": {"mnist": {"model": "resnet_v1", "depth": 20}},
    }
    process = run_workflow(tmp_path, config, "--cores", "1")
    assert process.returncode != 0
    assert "config key 'data.source_dirs.mnist'" in process.stdout
    assert (
        "lacks train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"
        in process.stdout
    )


def test_bad_config_stops_before_any_job_and_keeps_existing_outputs(tmp_path):
    good = {
        "experiments": {"digits": {"model": "resnet_v1", "depth": 20}},
        "data": {"download": False},
    }
    assert (
        run_workflow(tmp_path, good, "--cores", "1", "--until", "prepare").returncode
        == 0
    )
    manifest = tmp_path / "results" / "prepared" / "digits" / "manifest.json"
    before = manifest.read_bytes(), manifest.stat().st_mtime_ns
    bad = {**good, "protocol": {"epoch": 3}}
    process = run_workflow(
        tmp_path, bad, "--cores", "1", "--forceall", "--until", "prepare"
    )
    assert process.returncode != 0
    assert (
        "config key 'protocol.epoch' is not a known key (did you mean 'epochs'?)"
        in process.stdout
    )
    assert "rule download" not in process.stdout and "Job stats" not in process.stdout
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before


def test_jobs_import_the_checkouts_package_even_when_another_copy_comes_first(tmp_path):
    # Another clone's package, first on the path the user's shell gives every process
    # (as an editable install of another clone would be in site-packages).
    other = tmp_path / "other-clone" / "src" / "smoothbench"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text(
        "raise ImportError('imported the other clone')\n"
    )
    config = {"experiments": {"digits": {}}, "data": {"download": False}}
    process = run_workflow(
        tmp_path / "work",
        config,
        "--cores",
        "1",
        "--until",
        "prepare",
        env={"PYTHONPATH": str(other.parent)},
    )
    assert process.returncode == 0, process.stdout
    assert "the other clone" not in process.stdout
    manifest = json.loads(
        (
            tmp_path / "work" / "results" / "prepared" / "digits" / "manifest.json"
        ).read_text()
    )
    assert manifest["dataset"] == "digits"
