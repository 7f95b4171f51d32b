"""The datasets smoothbench knows: where they come from, their classes and splits.

One entry per *dataset* (what is downloaded and prepared once). The paper's
*experiments* (config.yaml's ``experiments``) point at these entries; ImageNet's
two variants (a) and (b) share the single ``imagenet12`` entry.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlparse

from smoothbench.errors import SmoothbenchError

DECATHLON_BUILDER = "visual_domain_decathlon"
_VGG = "http://www.robots.ox.ac.uk/~vgg/share/"
_DECATHLON_FILES = (
    _VGG + "decathlon-1.0-devkit.tar.gz",
    _VGG + "decathlon-1.0-data.tar.gz",
)
_MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything the data stage needs to know about one dataset.

    Attributes:
      name: the key used in config files and output paths.
      source: ``"tfds"`` (tensorflow-datasets builder) or ``"sklearn"`` (bundled).
      tfds_name: the TFDS builder name with its config, e.g. ``visual_domain_decathlon/dtd``.
      num_classes: K, the number of classes.
      train_split, validation_split: TFDS split names used for training and for the
        per-epoch evaluation whose best value the paper reports.
      native_shape: the (height, width, channels) of every image, or None when the
        images have varying sizes and are brought to a square by the prepare step.
      source_urls: the files the TFDS builder downloads; an air-gapped user fetches
        these and points ``data.source_dirs.<name>`` at the folder holding them.
      url_attribute: True when the builder reads its base URL from a class attribute
        ``URL`` (the MNIST family), so a local folder can stand in for the server
        without upstream checksums (Debian's re-compressed Fashion-MNIST files).
      note: extra advice shown when the dataset is missing (e.g. registration).
      own: True for a dataset the study defines itself (config key ``datasets``,
        :mod:`smoothbench.data.own_datasets`); its definition travels with the data
        stage's settings (:meth:`definition`).
      image_size: the square side this dataset's images are brought to; None takes
        ``data.image_size`` (the Decathlon's).
      channels: channels of a prepared image (1 grey, 3 colour).
      image_key, label_key: the TFDS features read as image and label.
      folder: the folder of images, one subfolder per class (source ``"folder"``).
      validation_fraction, split_seed: a folder without train/ and validation/ is
        split stratified, holding out this share, with this seed.
      class_names: the classes in label order (a folder's sorted subfolder names).
    """

    name: str
    source: str
    num_classes: int
    train_split: str
    validation_split: str
    native_shape: tuple[int, int, int] | None
    tfds_name: str | None = None
    source_urls: tuple[str, ...] = ()
    url_attribute: bool = False
    note: str = ""
    description: str = ""
    own: bool = False
    image_size: int | None = None
    channels: int = 3
    image_key: str = "image"
    label_key: str = "label"
    folder: str | None = None
    validation_fraction: float | None = None
    split_seed: int = 0
    class_names: tuple[str, ...] = ()

    @property
    def is_decathlon(self) -> bool:
        return self.tfds_name is not None and self.tfds_name.startswith(
            DECATHLON_BUILDER + "/"
        )

    @property
    def source_filenames(self) -> tuple[str, ...]:
        return tuple(url.rsplit("/", 1)[-1] for url in self.source_urls)

    @property
    def source_hosts(self) -> tuple[tuple[str | None, int], ...]:
        """(host, port) pairs the download needs, in first-seen order."""
        # urlparse's hostname is None for a URL without a host
        hosts: list[tuple[str | None, int]] = []
        for url in self.source_urls:
            parsed = urlparse(url)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            if (parsed.hostname, port) not in hosts:
                hosts.append((parsed.hostname, port))
        return tuple(hosts)

    def prepared_shape(self, image_size: int) -> tuple[int, int, int]:
        """Shape of one image after preparation: the native shape, or a square of the
        dataset's own side (else ``image_size``, config key data.image_size)."""
        if self.native_shape is not None:
            return self.native_shape
        side = self.image_size or image_size
        return (side, side, self.channels)

    def definition(self) -> dict:
        """A study-defined dataset as plain data (lists, no tuples): the fields its
        prepared data depends on, for the data stage's settings (Snakemake params, so
        wording such as ``description`` stays out); :func:`spec_from_settings` turns it
        back."""
        if not self.own:
            raise ValueError(f"{self.name} is a registry dataset: it has no definition")
        return {
            name: (list(value) if isinstance(value, tuple) else value)
            for name in DEFINITION_FIELDS
            for value in [getattr(self, name)]
        }


# The fields of a study's own dataset that its download and prepared data depend on.
DEFINITION_FIELDS = (
    "name",
    "source",
    "own",
    "tfds_name",
    "num_classes",
    "train_split",
    "validation_split",
    "native_shape",
    "image_size",
    "channels",
    "image_key",
    "label_key",
    "folder",
    "validation_fraction",
    "split_seed",
    "class_names",
)


def _decathlon(name: str, num_classes: int, description: str, **extra) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        source="tfds",
        tfds_name=f"{DECATHLON_BUILDER}/{name}",
        num_classes=num_classes,
        # The Decathlon's test labels are hidden (TFDS gives -1): validate on `validation`.
        train_split="train",
        validation_split="validation",
        native_shape=None,
        source_urls=extra.pop("source_urls", _DECATHLON_FILES),
        description=description + " (Visual Domain Decathlon, shorter side 72 px)",
        **extra,
    )


def _mnist_family(
    name: str, base_url: str, description: str, note: str = ""
) -> DatasetSpec:
    # No validation split: the paper's recipe validates MNIST on its test set.
    return DatasetSpec(
        name=name,
        source="tfds",
        tfds_name=name,
        num_classes=10,
        train_split="train",
        validation_split="test",
        native_shape=(28, 28, 1),
        source_urls=tuple(base_url + filename for filename in _IDX_FILES),
        url_attribute=True,
        note=note,
        description=description,
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        _decathlon("aircraft", 100, "FGVC-Aircraft"),
        _decathlon("cifar100", 100, "CIFAR-100"),
        _decathlon("daimlerpedcls", 2, "Daimler pedestrian classification"),
        _decathlon("dtd", 47, "Describable Textures"),
        _decathlon("gtsrb", 43, "German Traffic Signs"),
        _decathlon(
            "imagenet12",
            1000,
            "ImageNet ILSVRC-2012",
            source_urls=(
                _VGG + "decathlon-1.0-devkit.tar.gz",
                "http://www.image-net.org/image/decathlon/decathlon-1.0-data-imagenet.tar",
            ),
            note=(
                "The ImageNet archive (6.5 GB) is served only to registered users of "
                "image-net.org: download it by hand after logging in."
            ),
        ),
        _decathlon("omniglot", 1623, "Omniglot"),
        _decathlon("svhn", 10, "Street View House Numbers"),
        _decathlon("ucf101", 101, "UCF101 dynamic images"),
        _decathlon("vgg-flowers", 102, "VGG Flowers 102"),
        _mnist_family("mnist", _MNIST_URL, "MNIST handwritten digits"),
        DatasetSpec(
            name="cifar10",
            source="tfds",
            tfds_name="cifar10",
            num_classes=10,
            train_split="train",
            validation_split="test",
            native_shape=(32, 32, 3),
            source_urls=("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            description="CIFAR-10",
        ),
        _mnist_family(
            "fashion_mnist",
            _FASHION_URL,
            "Fashion-MNIST (not in the paper: real images available offline)",
            note=(
                "Offline, Debian's package dataset-fashion-mnist installs the four files "
                "in /usr/share/datasets/fashion-mnist/."
            ),
        ),
        DatasetSpec(
            name="digits",
            source="sklearn",
            num_classes=10,
            train_split="train",
            validation_split="validation",
            native_shape=(8, 8, 1),
            description=(
                "scikit-learn's bundled 8x8 digits (not in the paper: the offline demo); "
                "split 80/20 stratified with a fixed seed"
            ),
        ),
    ]
}

PAPER_DATASETS = (
    "aircraft",
    "cifar100",
    "daimlerpedcls",
    "dtd",
    "gtsrb",
    "omniglot",
    "svhn",
    "ucf101",
    "vgg-flowers",
    "imagenet12",
    "cifar10",
    "mnist",
)


class UnknownDatasetError(SmoothbenchError, KeyError):
    pass


def spec_from_settings(settings: dict) -> DatasetSpec:
    """The dataset of the data stage's ``settings`` (:meth:`smoothbench.study.Study.data_settings`):
    a study's own definition when they carry one, else the registry entry."""
    definition = settings.get("definition")
    if definition is None:
        return get_dataset(settings["dataset"])
    return spec_from_definition(definition)


def spec_from_definition(definition: dict, **extra) -> DatasetSpec:
    """:meth:`DatasetSpec.definition` (and ``extra`` fields, e.g. description) turned back."""
    values = dict(definition) | extra
    for name in ("native_shape", "class_names"):
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    return DatasetSpec(**values)


def unknown_dataset(name: str, known: dict | None = None) -> UnknownDatasetError:
    """The error for a dataset name that is neither in ``known`` (default: the registry)."""
    names = ", ".join(sorted(DATASETS if known is None else known))
    return UnknownDatasetError(
        f"unknown dataset {name!r}; known datasets: {names} (a dataset of your own is "
        "defined under config key 'datasets': docs/datasets.md)"
    )


def get_dataset(name: str) -> DatasetSpec:
    """The registry entry for ``name``, or an error that lists the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise unknown_dataset(name) from None
