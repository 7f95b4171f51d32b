"""The dataset registry agrees with tensorflow-datasets' own builders."""

from __future__ import annotations

import pytest

from smoothbench.data.registry import (
    DATASETS,
    PAPER_DATASETS,
    UnknownDatasetError,
    get_dataset,
)

TFDS_DATASETS = [name for name, spec in DATASETS.items() if spec.source == "tfds"]


def test_registry_holds_the_papers_twelve_datasets_and_the_offline_two():
    assert set(PAPER_DATASETS) <= set(DATASETS)
    assert set(DATASETS) - set(PAPER_DATASETS) == {"fashion_mnist", "digits"}
    decathlon = [name for name, spec in DATASETS.items() if spec.is_decathlon]
    assert len(decathlon) == 10


@pytest.mark.parametrize("name", TFDS_DATASETS)
def test_classes_and_source_files_match_the_tfds_builder(name, tmp_path):
    import tensorflow_datasets as tfds

    spec = get_dataset(name)
    builder = tfds.builder(spec.tfds_name, data_dir=str(tmp_path))
    assert builder.info.features["label"].num_classes == spec.num_classes
    # every file we tell an air-gapped user to fetch is one the builder downloads
    assert set(spec.source_urls) <= set(builder.url_infos)
    assert spec.source_urls


def test_splits_and_shapes():
    assert (DATASETS["dtd"].train_split, DATASETS["dtd"].validation_split) == (
        "train",
        "validation",
    )
    assert (DATASETS["mnist"].train_split, DATASETS["mnist"].validation_split) == (
        "train",
        "test",
    )
    assert (DATASETS["cifar10"].train_split, DATASETS["cifar10"].validation_split) == (
        "train",
        "test",
    )
    assert DATASETS["dtd"].prepared_shape(72) == (72, 72, 3)
    assert DATASETS["mnist"].prepared_shape(72) == (28, 28, 1)
    assert DATASETS["digits"].prepared_shape(72) == (8, 8, 1)
    assert (
        DATASETS["omniglot"].num_classes == 1623
        and DATASETS["daimlerpedcls"].num_classes == 2
    )


def test_source_hosts_carry_ports():
    assert DATASETS["mnist"].source_hosts == (("storage.googleapis.com", 443),)
    assert DATASETS["imagenet12"].source_hosts == (
        ("www.robots.ox.ac.uk", 80),
        ("www.image-net.org", 80),
    )
    assert "decathlon-1.0-data-imagenet.tar" in DATASETS["imagenet12"].source_filenames


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UnknownDatasetError, match="known datasets: aircraft, cifar10"):
        get_dataset("imagenet")
