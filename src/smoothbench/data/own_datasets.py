"""A study's own datasets (config key ``datasets``), turned into registry entries.

Each entry is one of two kinds, resolved at planning into a
:class:`smoothbench.data.registry.DatasetSpec` that experiments name like a built-in one:

- ``tfds: NAME`` (or ``NAME/CONFIG``): any TFDS image-classification builder. K, the
  image shape and the feature types come from the builder's own info, which TFDS
  holds in its code (offline); the splits are checked here when the builder is built
  in the data dir (its split metadata is at hand), else by the download rule.
- ``folder: PATH``: a folder of images, one subfolder per class
  (:mod:`smoothbench.data.image_folder`); K and the class names are the subfolders, the
  shape the first image's header; every image is read by the download rule.

Every refusal names the config key, or the file or folder at fault.

The workflow resolves them once, when it plans, and hands what it resolved to its jobs
(:data:`PLANNED_VARIABLE`): a job runs what was planned, without listing the folder or
importing tensorflow-datasets again (the results rules' environment has neither it nor
scikit-learn).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from smoothbench.config import ConfigError, load_schema
from smoothbench.data import image_folder
from smoothbench.data.registry import DATASETS, DatasetSpec, spec_from_definition

# Set by the workflow when it plans (workflow/rules/common.smk), read by its jobs: JSON of
# each own dataset's config entry and the definition planning resolved it into.
PLANNED_VARIABLE = "SMOOTHBENCH_PLANNED_DATASETS"

KINDS = ("tfds", "folder")
# The keys of each kind besides the kind's own (the schema's $defs.own_dataset).
KIND_KEYS = {
    "tfds": ("train_split", "validation_split", "image_key", "label_key"),
    "folder": ("validation_fraction", "split_seed"),
}


def _defaults() -> dict[str, Any]:
    """The defaults the schema states for an own dataset's keys."""
    properties = load_schema()["$defs"]["own_dataset"]["properties"]
    return {
        name: entry["default"]
        for name, entry in properties.items()
        if "default" in entry
    }


def _data_dir(config: dict) -> str | None:
    data_dir = config["data"]["tfds_data_dir"]
    return os.path.expanduser(data_dir) if data_dir else None


def _planned_entry(config: dict, name: str) -> dict:
    """What planning's resolution of dataset ``name`` depended on, as JSON data."""
    return json.loads(
        json.dumps(
            {
                "entry": config["datasets"][name],
                "data_dir": _data_dir(config),
                "cwd": os.getcwd(),
            }
        )
    )


def planned_record(config: dict, specs: Mapping[str, DatasetSpec]) -> str:
    """The value of :data:`PLANNED_VARIABLE` for a study planned from ``config``."""
    return json.dumps(
        {
            name: _planned_entry(config, name)
            | {"definition": spec.definition(), "description": spec.description}
            for name, spec in specs.items()
            if spec.own
        },
        sort_keys=True,
    )


def _planned(config: dict, environment: Mapping[str, str] | None) -> dict:
    """name -> DatasetSpec of the own datasets planning resolved from this very entry."""
    environment = os.environ if environment is None else environment
    try:
        records = json.loads(environment.get(PLANNED_VARIABLE) or "{}")
    except json.JSONDecodeError:
        return {}
    return {
        name: spec_from_definition(
            record["definition"], description=record["description"]
        )
        for name, record in records.items()
        if name in config["datasets"]
        and {key: record.get(key) for key in ("entry", "data_dir", "cwd")}
        == _planned_entry(config, name)
    }


def own_specs(
    config: dict, environment: Mapping[str, str] | None = None
) -> dict[str, DatasetSpec]:
    """name -> DatasetSpec of each entry of config key ``datasets`` (a validated config):
    as the workflow planned it (``environment``'s :data:`PLANNED_VARIABLE`), else
    resolved here."""
    specs = {}
    data_dir = _data_dir(config)
    planned = _planned(config, environment)
    defaults = _defaults()
    for name, entry in config["datasets"].items():
        if name in planned:
            specs[name] = planned[name]
            continue
        key = f"datasets.{name}"
        if name in DATASETS:
            raise ConfigError(
                f"config key {key!r}: {name} is a dataset of smoothbench's registry "
                f"({DATASETS[name].description}); give your dataset another name"
            )
        kinds = [kind for kind in KINDS if kind in entry]
        if len(kinds) != 1:
            raise ConfigError(
                f"config key {key!r}: give exactly one of 'tfds' (a TFDS builder's name) "
                f"and 'folder' (a folder of images, one subfolder per class); it has "
                f"{' and '.join(kinds) or 'neither'}"
            )
        kind = kinds[0]
        other = KINDS[1 - KINDS.index(kind)]
        for name_of_key in KIND_KEYS[other]:
            if name_of_key in entry:
                raise ConfigError(
                    f"config key '{key}.{name_of_key}': a {kind} dataset has no "
                    f"{name_of_key} (a key of {other} datasets); remove it"
                )
        settings = {
            name_of_key: value
            for name_of_key, value in defaults.items()
            if name_of_key in KIND_KEYS[kind]
        } | dict(entry)
        make = _tfds_spec if kind == "tfds" else _folder_spec
        specs[name] = make(name, key, settings, data_dir)
    return specs


@functools.lru_cache(maxsize=32)
def builder_info(tfds_name: str, data_dir: str | None):
    """The TFDS builder's info (features, and splits when it is built in ``data_dir``)."""
    import tensorflow_datasets as tfds

    return tfds.builder(tfds_name, data_dir=data_dir).info


def _tfds_spec(name: str, key: str, entry: dict, data_dir: str | None) -> DatasetSpec:
    tfds_name = entry["tfds"]
    try:
        info = builder_info(tfds_name, data_dir)
    except ImportError as error:
        raise ConfigError(
            f"config key '{key}.tfds': reading the builder {tfds_name!r} needs "
            f"tensorflow-datasets, which this environment lacks ({error})"
        ) from None
    except Exception as error:  # TFDS raises several kinds for a name it lacks
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConfigError(
            f"config key '{key}.tfds': TFDS has no builder {tfds_name!r} ({type(error).__name__}: {first})"
        ) from None
    features = info.features
    image_key, label_key = entry["image_key"], entry["label_key"]
    found = ", ".join(
        f"{feature} ({type(features[feature]).__name__})" for feature in features
    )
    for wanted, kind, which in (
        (image_key, "Image", "image_key"),
        (label_key, "ClassLabel", "label_key"),
    ):
        if wanted not in features or type(features[wanted]).__name__ != kind:
            raise ConfigError(
                f"config key '{key}.tfds': {tfds_name} is not an image classification set "
                f"as smoothbench reads one: it has no {kind} feature {wanted!r} (its features: "
                f"{found}); if another feature is the {which.split('_')[0]}, name it with "
                f"'{key}.{which}'"
            )
    height, width, channels = features[image_key].shape
    if channels not in (1, 3):
        raise ConfigError(
            f"config key '{key}.tfds': the images of {tfds_name} have {channels} channels; "
            "smoothbench reads grey (1) or colour (3) images"
        )
    image_size = entry.get("image_size")
    if (height is None or width is None) and image_size is None:
        raise ConfigError(
            f"config key '{key}.image_size' is missing: the images of {tfds_name} vary in "
            "size; set image_size to the square side they are brought to (data.square_method "
            "says how)"
        )
    num_classes = int(features[label_key].num_classes)
    if num_classes < 2:
        raise ConfigError(
            f"config key '{key}.tfds': {tfds_name} has {num_classes} class; a classifier "
            "needs two at least"
        )
    spec = _own_spec(
        name,
        image_size,
        (height, width, channels),
        source="tfds",
        tfds_name=tfds_name,
        num_classes=num_classes,
        train_split=entry["train_split"],
        validation_split=entry["validation_split"],
        description=f"TFDS {tfds_name}, the study's own dataset",
        image_key=image_key,
        label_key=label_key,
    )
    known = sorted(info.splits.keys())
    if known:  # the builder is built in the data dir: its splits are known offline
        check_splits(spec, known)
    return spec


def check_splits(spec: DatasetSpec, known: list[str]) -> None:
    """Refuse a train or validation split (or a slice such as ``train[:90%]+test``) of
    an own TFDS dataset naming a split its builder lacks (``known``)."""
    for role in ("train_split", "validation_split"):
        for part in getattr(spec, role).split("+"):
            base = re.split(r"[\[(]", part.strip(), maxsplit=1)[0]
            if base not in known:
                raise ConfigError(
                    f"config key 'datasets.{spec.name}.{role}': {spec.tfds_name} has no "
                    f"split {base!r}; its splits: {', '.join(known)}"
                )


def _own_spec(name: str, image_size: int | None, shape: tuple, **fields) -> DatasetSpec:
    """An own dataset's entry: its images keep their ``shape`` (height, width,
    channels) unless ``image_size`` squares them."""
    return DatasetSpec(
        name=name,
        own=True,
        image_size=image_size,
        native_shape=None if image_size else tuple(shape),
        channels=shape[2],
        **fields,
    )


def _folder_spec(name: str, key: str, entry: dict, data_dir: str | None) -> DatasetSpec:
    root = os.path.abspath(os.path.expanduser(entry["folder"]))
    fraction = entry.get("validation_fraction")
    layout = image_folder.read_layout(root, key, fraction)
    split_text = "its own train/ and validation/"
    if not layout.has_own_split:
        # read_layout refuses a folder with neither its own split nor a fraction
        assert fraction is not None
        image_folder.check_split_reaches_every_class(
            layout, key, fraction, entry["split_seed"]
        )
        split_text = (
            f"{1 - fraction:.0%}/{fraction:.0%} stratified, seed {entry['split_seed']}"
        )
    first = layout.files()[0][0]
    height, width, channels = image_folder.image_header(layout.root / first)
    image_size = entry.get("image_size")
    return _own_spec(
        name,
        image_size,
        (height, width, channels),
        source="folder",
        num_classes=len(layout.class_names),
        train_split="train",
        validation_split="validation",
        description=f"the image folder {root} ({split_text}), the study's own dataset",
        folder=root,
        validation_fraction=fraction,
        split_seed=entry["split_seed"],
        class_names=layout.class_names,
    )
