"""Shape arithmetic of the paper's ResNets, free of Keras so that the config check and
the Snakefile can use it without importing a deep-learning backend."""

from __future__ import annotations

import math
from typing import cast

FIXED_POOL_SIZE = 8


def depth_is_valid(model: str, depth: int) -> bool:
    """Whether ``depth`` is a depth of the ResNet family ``model``: 6n+2 for resnet_v1,
    9n+2 for resnet_v2 (n >= 1)."""
    step = 6 if model == "resnet_v1" else 9
    return depth >= step + 2 and (depth - 2) % step == 0


def final_map_size(image_size: int) -> int:
    """Side of the last feature map: two stride-2 'same' convolutions, ceil(ceil(s/2)/2)."""
    return math.ceil(math.ceil(image_size / 2) / 2)


def padding_to(
    image_shape, min_image_size: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Symmetric (top, bottom), (left, right) padding bringing each side up to ``min_image_size``."""
    padding: list[tuple[int, int]] = []
    for side in image_shape[:2]:
        missing = max(0, min_image_size - side)
        padding.append((missing // 2, missing - missing // 2))
    # two pairs for an image shape of (height, width, channels)
    return cast(tuple[tuple[int, int], tuple[int, int]], tuple(padding))


def padded_shape(image_shape, min_image_size: int) -> tuple[int, int, int]:
    (top, bottom), (left, right) = padding_to(image_shape, min_image_size)
    return (
        image_shape[0] + top + bottom,
        image_shape[1] + left + right,
        image_shape[2],
    )
