"""Bring a dataset's train and validation splits to uint8 arrays, its training mean, and a manifest.

Images stay uint8 (mean subtraction and augmentation happen on the fly at training
time); Decathlon images are brought to a fixed square. The per-pixel training mean
is accumulated in float64 while the arrays stream to disk and stored as float32 on
the [0, 1] scale the paper's recipe uses (pixels / 255).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from smoothbench import files
from smoothbench.data import array_store, image_folder
from smoothbench.data.registry import DatasetSpec, get_dataset, spec_from_settings

BATCH = 512
SPLITS = ("train", "validation")


def square_image(image, size: int, method: str):
    """One image (H, W, C) uint8 -> (size, size, C) uint8, as a TensorFlow op.

    ``center_crop`` resizes the shorter side to ``size`` (keeping the aspect ratio)
    and keeps the central square; ``resize`` stretches the whole image. An image
    already of the target size passes through unchanged.
    """
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    height, width = tf.shape(image)[0], tf.shape(image)[1]

    def unchanged():
        return tf.cast(image, tf.float32)

    if method == "resize":

        def changed():
            return tf.image.resize(
                image, (size, size), method="bilinear", antialias=True
            )

        out = tf.cond(tf.logical_and(height == size, width == size), unchanged, changed)
    elif method == "center_crop":
        shorter = tf.minimum(height, width)
        scale = tf.cast(size, tf.float32) / tf.cast(shorter, tf.float32)
        new_height = tf.maximum(
            size, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32)
        )
        new_width = tf.maximum(
            size, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32)
        )

        def changed():
            return tf.image.resize(
                image, (new_height, new_width), method="bilinear", antialias=True
            )

        resized = tf.cond(shorter == size, unchanged, changed)
        top = (tf.shape(resized)[0] - size) // 2
        left = (tf.shape(resized)[1] - size) // 2
        out = resized[top : top + size, left : left + size, :]
    else:
        raise ValueError(f"unknown square_method {method!r}; use center_crop or resize")
    out = tf.ensure_shape(out, (size, size, None))
    return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


class Split:
    """A split to be written: its size, its image shape, and a way to stream batches."""

    def __init__(self, name: str, count: int, shape: tuple[int, ...], batches) -> None:
        self.name, self.count, self.shape, self._batches = name, count, shape, batches

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self._batches()


def _tfds_splits(spec: DatasetSpec, settings: dict) -> tuple[dict[str, Split], dict]:
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder(spec.tfds_name, data_dir=settings["tfds_data_dir"])
    image_key, label_key = spec.image_key, spec.label_key
    if not settings["mock"]["enabled"] and not builder.is_prepared():
        raise array_store.PreparedDataError(
            f"dataset {spec.name!r} is not built in the TFDS data dir {builder.data_dir}: run the download rule first"
        )
    shape = spec.prepared_shape(settings.get("image_size", 0))
    splits = {}
    for role in SPLITS:
        split = settings["splits"][role]

        def dataset(split=split):
            data = builder.as_dataset(split=split, shuffle_files=False).map(
                lambda example: (example[image_key], example[label_key])
            )
            if spec.native_shape is None:
                size, method = settings["image_size"], settings["square_method"]
                data = data.map(
                    lambda image, label: (square_image(image, size, method), label),
                    num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True,
                )
            return data.batch(BATCH).prefetch(2)

        try:
            count = int(builder.info.splits[split].num_examples)
        except (KeyError, ValueError, TypeError):
            count = 0
        if count == 0:  # mock data carries no split metadata: count by reading
            count = sum(int(labels.shape[0]) for _, labels in tfds.as_numpy(dataset()))
        splits[role] = Split(
            split, count, shape, lambda dataset=dataset: tfds.as_numpy(dataset())
        )
    label = builder.info.features[label_key]
    info = {"tfds_version": str(builder.version), "class_names": list(label.names)}
    if label.num_classes != spec.num_classes:
        raise array_store.PreparedDataError(
            f"dataset {spec.name!r}: TFDS says K={label.num_classes}, the registry says K={spec.num_classes}"
        )
    return splits, info


def _digits_splits(spec: DatasetSpec, settings: dict) -> tuple[dict[str, Split], dict]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # 0..16 intensities -> 0..255, one channel.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int32)
    parts = train_test_split(
        images,
        labels,
        test_size=settings["validation_fraction"],
        stratify=labels,
        random_state=0,
    )
    arrays = {"train": (parts[0], parts[2]), "validation": (parts[1], parts[3])}
    assert spec.native_shape is not None  # the registry's digits are 8x8x1
    splits = {
        role: Split(
            f"{role} (stratified {1 - settings['validation_fraction']:.0%}/{settings['validation_fraction']:.0%}, seed 0)",
            len(arrays[role][1]),
            spec.native_shape,
            lambda role=role: iter([arrays[role]]),
        )
        for role in SPLITS
    }
    return splits, {
        "tfds_version": None,
        "class_names": [str(name) for name in digits.target_names],
    }


def _folder_splits(
    spec: DatasetSpec, settings: dict, record: dict | None
) -> tuple[dict[str, Split], dict]:
    """A study's folder of images (:mod:`smoothbench.data.image_folder`): the files the
    download rule recorded, each checked against its sha256 as it is read, split by the
    folder's own train/ and validation/ or stratified with the dataset's seed."""
    if not record or "files" not in record:
        raise array_store.PreparedDataError(
            f"dataset {spec.name!r}: the download rule's record of its files is missing; run the workflow"
        )
    digests = record["files"]
    key = f"datasets.{spec.name}"
    assert spec.folder is not None  # a dataset of source "folder" names its folder
    layout = image_folder.read_layout(spec.folder, key, spec.validation_fraction)
    listed = {relative for relative, _ in layout.files()}
    if listed != set(digests):
        changed = sorted(listed ^ set(digests))
        raise image_folder.ImageFolderError(
            f"the files of {spec.folder} changed since the download rule recorded them "
            f"(added or removed: {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}); run the workflow again"
        )
    assigned = image_folder.assign_splits(
        layout, spec.validation_fraction, spec.split_seed
    )
    shape = tuple(spec.prepared_shape(settings.get("image_size", 0)))

    def batches(entries):
        for start in range(0, len(entries), BATCH):
            images = []
            for relative, _ in entries[start : start + BATCH]:
                image, _ = image_folder.read_image(
                    layout.root, relative, digests[relative]
                )
                if image.shape[2] != shape[2]:
                    raise image_folder.ImageFolderError(
                        f"{layout.root / relative} has {image.shape[2]} channel(s), the folder's "
                        f"images {shape[2]}: save them all as one kind"
                    )
                if image.shape != shape:
                    if spec.native_shape is not None:
                        raise image_folder.ImageFolderError(
                            f"{layout.root / relative} is {image.shape[0]}x{image.shape[1]}, the "
                            f"folder's images {shape[0]}x{shape[1]}: set config key '{key}.image_size'"
                        )
                    image = square_image(
                        image, shape[0], settings["square_method"]
                    ).numpy()
                images.append(image)
            labels = [label for _, label in entries[start : start + BATCH]]
            yield np.stack(images), np.asarray(labels, dtype=np.int32)

    fraction = spec.validation_fraction
    if layout.has_own_split:
        names = {role: f"{role}/" for role in SPLITS}
    else:
        # read_layout refuses a folder with neither its own split nor a fraction
        assert fraction is not None
        names = {
            role: f"{role} ({(1 - fraction) if role == 'train' else fraction:.0%} of the folder, "
            f"stratified, seed {spec.split_seed})"
            for role in SPLITS
        }
    splits = {
        role: Split(
            names[role],
            len(assigned[role]),
            shape,
            lambda entries=assigned[role]: batches(entries),
        )
        for role in SPLITS
    }
    source_files = {
        role: {
            "count": len(assigned[role]),
            "sha256": image_folder.files_digest(assigned[role], digests),
        }
        for role in SPLITS
    }
    return splits, {
        "tfds_version": None,
        "class_names": list(spec.class_names),
        "source_files": source_files,
    }


def prepare(
    settings: dict, output_folder: Path | str, download_record: dict | None = None
) -> dict:
    """Prepare ``settings['dataset']`` into ``output_folder``; return its manifest.

    ``download_record`` (the download rule's) holds a folder dataset's file digests.
    Raises :class:`smoothbench.data.array_store.PreparedDataError` when the data does not fit
    the registry (wrong image shape, labels outside [0, K)); nothing is published then.
    """
    spec = spec_from_settings(settings)
    output_folder = Path(output_folder)
    mock = settings.get("mock", {}).get("enabled", False) and spec.source == "tfds"
    context = contextlib.nullcontext()
    if mock:
        import tensorflow_datasets as tfds

        context = tfds.testing.mock_data(num_examples=settings["mock"]["num_examples"])
    with context:
        if spec.source == "folder":
            splits, info = _folder_splits(spec, settings, download_record)
        else:
            splits, info = (
                _digits_splits if spec.source == "sklearn" else _tfds_splits
            )(spec, settings)
        return _publish_splits(spec, splits, info, settings, output_folder, mock)


def prepare_arrays(
    dataset: str,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: list[str],
    output_folder: Path | str,
) -> dict:
    """Prepare ``dataset`` from images and labels already in memory (``arrays``: role
    -> (uint8 images N x H x W x C, int labels)), for a machine without TensorFlow
    (the GPU check); the same files and manifest as :func:`prepare`."""
    spec = get_dataset(dataset)
    splits = {
        role: Split(
            f"{role} (given as arrays)",
            len(arrays[role][1]),
            tuple(arrays[role][0].shape[1:]),
            lambda role=role: iter([arrays[role]]),
        )
        for role in SPLITS
    }
    info = {"tfds_version": None, "class_names": list(class_names)}
    return _publish_splits(spec, splits, info, {}, Path(output_folder), mock=False)


def _publish_splits(
    spec: DatasetSpec,
    splits: dict,
    info: dict,
    settings: dict,
    output_folder: Path,
    mock: bool,
) -> dict:
    """Write the splits, their mean and the manifest into ``output_folder`` (staged,
    the manifest last); return the manifest."""
    with array_store.staging_folder(output_folder) as staging:
        arrays: dict[str, dict[str, Any]] = {}
        split_summary: dict[str, dict[str, Any]] = {}
        mean: np.ndarray | None = None
        for role, split in splits.items():
            summary, sums = _write_split(spec, role, split, staging, arrays)
            split_summary[role] = summary
            if role == "train":
                if split.count == 0:
                    raise array_store.PreparedDataError(
                        f"dataset {spec.name!r}: the train split {split.name!r} is empty"
                    )
                mean = (sums / split.count / 255.0).astype(np.float32)
        assert mean is not None  # every caller's splits hold "train"
        arrays["mean"] = {
            "file": "mean.npy",
            "dtype": "float32",
            "shape": list(mean.shape),
            "sha256": array_store.save_array(staging / "mean.npy", mean),
        }
        manifest = {
            "format_version": array_store.FORMAT_VERSION,
            "dataset": spec.name,
            "source": spec.source,
            "tfds_name": spec.tfds_name,
            "tfds_version": info["tfds_version"],
            "mock_data": bool(mock),
            "num_classes": spec.num_classes,
            "class_names": info["class_names"],
            "image_shape": list(splits["train"].shape),
            "mean_scale": "per-pixel mean of train_images / 255 (float32)",
            "splits": split_summary,
            "arrays": arrays,
            "settings": {
                key: settings[key]
                for key in ("image_size", "square_method", "validation_fraction")
                if key in settings
            },
        }
        if "source_files" in info:  # a folder's files, per split: count and digest
            manifest["source_files"] = info["source_files"]
        files.write_json_atomic(staging / array_store.MANIFEST_NAME, manifest)
        array_store.publish(
            staging,
            output_folder,
            [entry["file"] for entry in arrays.values()] + [array_store.MANIFEST_NAME],
        )
    return manifest


def _write_split(
    spec: DatasetSpec, role: str, split: Split, staging: Path, arrays: dict
):
    """Stream one split to ``{role}_images.npy`` / ``{role}_labels.npy``; return its summary and pixel sums."""
    shape = tuple(split.shape)
    image_writer = array_store.StreamingArrayWriter(
        staging / f"{role}_images.npy", (split.count, *shape), np.uint8
    )
    label_writer = array_store.StreamingArrayWriter(
        staging / f"{role}_labels.npy", (split.count,), np.int32
    )
    sums = np.zeros(shape, dtype=np.float64)
    class_counts = np.zeros(spec.num_classes, dtype=np.int64)
    for images, labels in split.batches():
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.dtype != np.uint8 or images.shape[1:] != shape:
            raise array_store.PreparedDataError(
                f"dataset {spec.name!r}, split {split.name!r}: images of {images.dtype}{list(images.shape[1:])}, "
                f"expected uint8{list(shape)}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise array_store.PreparedDataError(
                f"dataset {spec.name!r}, split {split.name!r}: labels in [{labels.min()}, {labels.max()}], "
                f"expected [0, {spec.num_classes}) (hidden test labels are -1: use a labelled split)"
            )
        image_writer.write(images)
        label_writer.write(labels.astype(np.int32))
        if role == "train":
            sums += images.sum(axis=0, dtype=np.float64)
        class_counts += np.bincount(labels, minlength=spec.num_classes)
    for writer, name in (
        (image_writer, f"{role}_images"),
        (label_writer, f"{role}_labels"),
    ):
        try:
            digest = writer.close()
        except ValueError as error:
            raise array_store.PreparedDataError(
                f"dataset {spec.name!r}, split {split.name!r}: {error}"
            ) from None
        arrays[name] = {
            "file": f"{name}.npy",
            "dtype": str(writer.dtype),
            "shape": list(writer.shape),
            "sha256": digest,
        }
    summary = {
        "split": split.name,
        "count": split.count,
        "class_counts": class_counts.tolist(),
    }
    return summary, sums
