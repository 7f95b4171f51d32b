"""The datasets a study can name, and the checks of config key ``data`` that need them.

:func:`dataset_specs` joins the registry (:mod:`smoothbench.data.registry`) and the study's
own datasets (config key ``datasets``, :mod:`smoothbench.data.own_datasets`);
:func:`check_data_section` refuses ``data`` keys that name a dataset they cannot apply to.
"""

from __future__ import annotations

import math

from smoothbench.config import ConfigError
from smoothbench.data.own_datasets import own_specs
from smoothbench.data.registry import DATASETS, DatasetSpec, unknown_dataset

# scikit-learn's load_digits(): 1,797 images of 10 classes (174 to 183 each), which
# prepare._digits_splits splits stratified with data.digits_validation_fraction.
DIGITS_IMAGES = 1797


def dataset_specs(config: dict) -> dict[str, DatasetSpec]:
    """name -> entry of every dataset a validated config can name."""
    return {**DATASETS, **own_specs(config)}


# data's per-dataset maps, and why an entry of each is refused for the study's own
# datasets and for the bundled digits (neither is read through registry TFDS sources).
_PER_DATASET_KEYS = (
    (
        "source_dirs",
        "is the study's own dataset (config key 'datasets.{name}'), which reads no registry "
        "source files; remove it",
        "is bundled with scikit-learn and reads no source files, so this key would be "
        "ignored; remove it",
    ),
    (
        "splits",
        "is the study's own dataset; set its splits in 'datasets.{name}' (train_split, "
        "validation_split, or validation_fraction for a folder)",
        "comes from scikit-learn and has no TFDS splits, so this key would be ignored; its "
        "split is set by 'data.digits_validation_fraction'",
    ),
)


def check_data_section(data: dict, specs: dict[str, DatasetSpec]) -> None:
    """Refuse source_dirs and splits entries that would be ignored, and a digits split
    that cannot be made."""
    for section, own_advice, bundled_advice in _PER_DATASET_KEYS:
        for dataset in data[section]:
            spec = _check_known(dataset, f"data.{section}", specs)
            if spec.own or spec.source != "tfds":
                advice = (own_advice if spec.own else bundled_advice).format(
                    name=dataset
                )
                raise ConfigError(
                    f"config key 'data.{section}.{dataset}': {dataset} {advice}"
                )
    _check_digits_fraction(data["digits_validation_fraction"])


def _check_known(dataset: str, key: str, specs: dict[str, DatasetSpec]) -> DatasetSpec:
    if dataset not in specs:
        error = unknown_dataset(dataset, specs)
        raise ConfigError(f"config key '{key}.{dataset}': {error.args[0]}")
    return specs[dataset]


def _check_digits_fraction(fraction: float) -> None:
    """Refuse a digits split that leaves a class without a validation or a training image.

    prepare._digits_splits calls scikit-learn's stratified train_test_split with
    test_size=fraction: it holds out ceil(fraction x 1797) images and refuses fewer than
    10 (the number of classes) on either side. From 10 to 1787 held out, every class has
    at least one image on each side (digits' classes hold 174 to 183 images each;
    checked for every count with scikit-learn 1.9), so the bound is exactly
    9/1797 < fraction <= 1787/1797.
    """
    classes = DATASETS["digits"].num_classes
    held_out = math.ceil(fraction * DIGITS_IMAGES)  # as scikit-learn counts it
    if classes <= held_out <= DIGITS_IMAGES - classes:
        return
    low, high = classes - 1, DIGITS_IMAGES - classes
    raise ConfigError(
        f"config key 'data.digits_validation_fraction': {fraction} holds out {held_out} of the {DIGITS_IMAGES} "
        f"digits images for validation and leaves {DIGITS_IMAGES - held_out} for training, but the stratified "
        f"split needs at least one image of each of the {classes} classes on both sides; use a fraction from "
        f"{math.ceil(low / DIGITS_IMAGES * 1e5) / 1e5} to {math.floor(high / DIGITS_IMAGES * 1e5) / 1e5} "
        f"(exactly: above {low}/{DIGITS_IMAGES}, at most {high}/{DIGITS_IMAGES})"
    )
