"""Batches of prepared uint8 arrays for Keras, in an order fixed by (seed, epoch).

Training reads the memory-mapped ``.npy`` files of a prepared dataset
(:func:`smoothbench.data.array_store.open_prepared`) batch by batch, so no dataset is loaded
whole (ImageNet at 72 px is about 19 GB). The images stay uint8 until the model's
first layer (:class:`smoothbench.models.resnet.Preprocess`) casts, scales and centres them on
the device, and augmentation runs there too: the host only gathers bytes.

The shuffle of epoch ``e`` of seed ``s`` is ``numpy.random.default_rng([s, e])``'s
permutation. It depends on nothing else, so a job resumed at epoch 57 sees the same
order at epoch 57 as a job that never stopped.

Backend-neutral: a ``keras.utils.PyDataset``, which every Keras 3 backend accepts.
"""

from __future__ import annotations

import math

import keras
import numpy as np


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of one epoch: a permutation depending only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


class ArrayBatches(keras.utils.PyDataset):
    """(uint8 images, int32 labels) batches of ``images[order]``; the last batch may be short.

    Each batch's rows are read in ascending file order (then put back in the batch's
    shuffled order), which keeps reads from a memory-mapped file sequential-ish.
    """

    def __init__(
        self, images, labels, batch_size: int, order=None, workers: int = 1, **kwargs
    ):
        super().__init__(workers=workers, use_multiprocessing=False, **kwargs)
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.images = images
        self.labels = labels
        self.batch_size = int(batch_size)
        self.order = np.arange(len(images)) if order is None else np.asarray(order)
        if len(self.order) == 0:
            raise ValueError("no examples to batch")

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(index)
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        ascending = np.argsort(rows, kind="stable")
        sorted_rows = rows[ascending]
        images = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        labels = np.empty((len(rows),), dtype=np.int32)
        images[ascending] = self.images[sorted_rows]
        labels[ascending] = self.labels[sorted_rows]
        return images, labels
