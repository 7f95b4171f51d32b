"""The paper's networks: the Keras example's ResNet v1 (depth 6n+2) and v2 (9n+2).

Rebuilt in Keras 3 from the structure of keras-team/keras ``examples/cifar10_resnet.py``
(the recipe the paper follows; see ../shared/reference.md section 1):

- every convolution: ``he_normal``, ``l2(1e-4)``, bias on, ``padding="same"``;
- v1: stem Conv3x3(16)-BN-ReLU, three stacks of n blocks [Conv3x3-BN-ReLU, Conv3x3-BN]
  + shortcut, add, ReLU; widths 16/32/64; the first block of stacks 2 and 3 has stride 2
  and a 1x1 convolution shortcut without BN;
- v2: stem Conv3x3(16)-BN-ReLU, then pre-activation bottlenecks
  BN-ReLU-Conv1x1 / BN-ReLU-Conv3x3 / BN-ReLU-Conv1x1 with inner widths 16/64/128 and
  output widths 64/128/256; the first block of stage 1 skips its first BN-ReLU; a 1x1
  projection shortcut at the first block of every stage; head BN-ReLU;
- head: ``AveragePooling2D(pool_size=8)`` (the example's fixed pool) or a global
  average pool (``pooling="global"``), Flatten, Dense(K, he_normal).

One deliberate difference: the Dense layer returns logits and the loss applies
log-softmax itself (:mod:`smoothbench.train.losses`). The example's softmax output followed
by a clipped log is the same function without the clipping; probabilities are
``keras.ops.softmax(logits)``.

Only ``keras.layers`` and ``keras.ops`` are used, so the model runs under any Keras 3
backend (TensorFlow, JAX, PyTorch).
"""

from __future__ import annotations

import math

import keras

from smoothbench.models.shapes import FIXED_POOL_SIZE, depth_is_valid, final_map_size

L2_WEIGHT = 1e-4
POOLINGS = ("fixed_8x8", "global")


def _convolution_block(
    inputs,
    filters: int,
    kernel_size: int = 3,
    strides: int = 1,
    activation: str | None = "relu",
    batch_normalization: bool = True,
    convolution_first: bool = True,
    name: str = "",
):
    """The example's ``resnet_layer``: Conv-BN-ReLU (v1) or BN-ReLU-Conv (v2)."""
    convolution = keras.layers.Conv2D(
        filters,
        kernel_size=kernel_size,
        strides=strides,
        padding="same",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(L2_WEIGHT),
        name=f"{name}_conv",
    )
    x = inputs
    if convolution_first:
        x = convolution(x)
        if batch_normalization:
            x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        if activation:
            x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
    else:
        if batch_normalization:
            x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        if activation:
            x = keras.layers.Activation(activation, name=f"{name}_{activation}")(x)
        x = convolution(x)
    return x


def _head(x, num_classes: int, pooling: str):
    if pooling == "fixed_8x8":
        x = keras.layers.AveragePooling2D(pool_size=FIXED_POOL_SIZE, name="pool")(x)
        x = keras.layers.Flatten(name="flatten")(x)
    elif pooling == "global":
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    else:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    # float32 logits even under a mixed-precision policy: the loss needs them exact.
    return keras.layers.Dense(
        num_classes, kernel_initializer="he_normal", dtype="float32", name="logits"
    )(x)


def _check_input(input_shape, pooling: str) -> None:
    if pooling == "fixed_8x8":
        smallest = min(final_map_size(input_shape[0]), final_map_size(input_shape[1]))
        if smallest < FIXED_POOL_SIZE:
            raise ValueError(
                f"input {input_shape[0]}x{input_shape[1]} leaves a {smallest}-pixel feature map, smaller than the fixed "
                f"{FIXED_POOL_SIZE}x{FIXED_POOL_SIZE} pool; pad the images to at least 29 pixels or pool globally"
            )


def _blocks_per_stage(model: str, depth: int, layers_per_block: int) -> int:
    """n of a depth 6n+2 (v1) or 9n+2 (v2) network; the rule is the config's own check."""
    if not depth_is_valid(model, depth):
        raise ValueError(f"{model} depth must be {layers_per_block}n+2, got {depth}")
    return (depth - 2) // layers_per_block


def resnet_v1(
    input_shape,
    depth: int,
    num_classes: int,
    pooling: str = "fixed_8x8",
    name: str | None = None,
) -> keras.Model:
    """ResNet v1 (He et al. 2016a) for small images; depth 6n+2 (20 in the paper)."""
    blocks = _blocks_per_stage("resnet_v1", depth, 6)
    _check_input(input_shape, pooling)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    filters = 16
    x = _convolution_block(inputs, filters, name="stem")
    for stack in range(3):
        for block in range(blocks):
            prefix = f"stack{stack + 1}_block{block + 1}"
            strides = 2 if stack > 0 and block == 0 else 1
            y = _convolution_block(x, filters, strides=strides, name=f"{prefix}_1")
            y = _convolution_block(y, filters, activation=None, name=f"{prefix}_2")
            if stack > 0 and block == 0:
                x = _convolution_block(
                    x,
                    filters,
                    kernel_size=1,
                    strides=strides,
                    activation=None,
                    batch_normalization=False,
                    name=f"{prefix}_shortcut",
                )
            x = keras.layers.Add(name=f"{prefix}_add")([x, y])
            x = keras.layers.Activation("relu", name=f"{prefix}_out")(x)
        filters *= 2
    outputs = _head(x, num_classes, pooling)
    return keras.Model(inputs, outputs, name=name or f"resnet_v1_{depth}")


def resnet_v2(
    input_shape,
    depth: int,
    num_classes: int,
    pooling: str = "fixed_8x8",
    name: str | None = None,
) -> keras.Model:
    """ResNet v2 (He et al. 2016b), pre-activation bottlenecks; depth 9n+2 (83 in the paper)."""
    blocks = _blocks_per_stage("resnet_v2", depth, 9)
    _check_input(input_shape, pooling)
    inputs = keras.Input(shape=tuple(input_shape), name="images")
    filters_in = 16
    x = _convolution_block(inputs, filters_in, convolution_first=True, name="stem")
    for stage in range(3):
        for block in range(blocks):
            prefix = f"stage{stage + 1}_block{block + 1}"
            activation: str | None = "relu"
            batch_normalization, strides = True, 1
            if stage == 0:
                filters_out = filters_in * 4
                if block == 0:  # the stem's BN-ReLU precedes it already
                    activation, batch_normalization = None, False
            else:
                filters_out = filters_in * 2
                if block == 0:
                    strides = 2
            y = _convolution_block(
                x,
                filters_in,
                kernel_size=1,
                strides=strides,
                activation=activation,
                batch_normalization=batch_normalization,
                convolution_first=False,
                name=f"{prefix}_1",
            )
            y = _convolution_block(
                y, filters_in, convolution_first=False, name=f"{prefix}_2"
            )
            y = _convolution_block(
                y,
                filters_out,
                kernel_size=1,
                convolution_first=False,
                name=f"{prefix}_3",
            )
            if block == 0:
                x = _convolution_block(
                    x,
                    filters_out,
                    kernel_size=1,
                    strides=strides,
                    activation=None,
                    batch_normalization=False,
                    name=f"{prefix}_shortcut",
                )
            x = keras.layers.Add(name=f"{prefix}_add")([x, y])
        filters_in = filters_out
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Activation("relu", name="head_relu")(x)
    outputs = _head(x, num_classes, pooling)
    return keras.Model(inputs, outputs, name=name or f"resnet_v2_{depth}")


BUILDERS = {"resnet_v1": resnet_v1, "resnet_v2": resnet_v2}


def build_resnet(
    model: str, depth: int, input_shape, num_classes: int, pooling: str = "fixed_8x8"
) -> keras.Model:
    """The paper's classifier by name: ``build_resnet("resnet_v1", 20, (32, 32, 3), 10)``."""
    try:
        builder = BUILDERS[model]
    except KeyError:
        raise ValueError(
            f"model must be one of {sorted(BUILDERS)}, got {model!r}"
        ) from None
    return builder(input_shape, depth, num_classes, pooling)


class Preprocess(keras.layers.Layer):
    """uint8 images -> float32 in [0, 1], minus the per-pixel training mean, zero-padded.

    The example subtracts the mean from the whole array before training; doing it here,
    on the device, keeps the arrays uint8 on disk and in transfer. Padding happens after
    the mean is subtracted, so padded pixels are 0 in the centred space (for MNIST's
    black borders: the same value as the mean there). The mean is a non-trainable weight,
    so a checkpoint carries it.
    """

    def __init__(
        self, mean_shape, padding=((0, 0), (0, 0)), subtract_mean: bool = True, **kwargs
    ):
        super().__init__(**kwargs)
        self.mean_shape = tuple(mean_shape)
        self.padding = tuple(tuple(int(p) for p in side) for side in padding)
        self.subtract_mean = bool(subtract_mean)
        self.mean = self.add_weight(
            shape=self.mean_shape,
            initializer="zeros",
            trainable=False,
            name="mean",
            dtype="float32",
        )

    def call(self, images):
        x = keras.ops.cast(images, "float32") / 255.0
        if self.subtract_mean:
            x = x - self.mean
        (top, bottom), (left, right) = self.padding
        if top or bottom or left or right:
            x = keras.ops.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        return x

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        batch, height, width, channels = input_shape
        return (batch, height + top + bottom, width + left + right, channels)

    def get_config(self):
        return {
            **super().get_config(),
            "mean_shape": self.mean_shape,
            "padding": self.padding,
            "subtract_mean": self.subtract_mean,
        }


class RandomShift(keras.layers.Layer):
    """Shift each training image by a random fraction of its height and width.

    The example's ``ImageDataGenerator(width_shift_range=f, height_shift_range=f,
    fill_mode="nearest")`` on the device: shifts uniform in [-f, f] x size pixels,
    bilinear interpolation (its spline order 1), border pixels repeated outward. A
    translation's bilinear resampling is separable, so each axis is one batched matrix
    product with a two-diagonal interpolation matrix: plain ``keras.ops``, which XLA
    compiles under every backend (Keras' ``RandomTranslation`` opts out of XLA, which
    would turn compilation off for the whole model). The identity outside training.
    """

    def __init__(
        self,
        height_factor: float,
        width_factor: float,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.height_factor = float(height_factor)
        self.width_factor = float(width_factor)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def interpolation_matrix(shift, size: int):
        """(batch, size, size) matrices M with (M @ column)[i] = column at i - shift, bilinear,
        positions outside the image clamped to its border (fill_mode="nearest")."""
        ops = keras.ops
        positions = ops.arange(size, dtype="float32")[None, :] - shift[:, None]
        positions = ops.clip(positions, 0.0, size - 1.0)
        lower = ops.floor(positions)
        weight = (positions - lower)[..., None]
        lower = ops.cast(lower, "int32")
        upper = ops.minimum(lower + 1, size - 1)
        return (1.0 - weight) * ops.one_hot(
            lower, size, dtype="float32"
        ) + weight * ops.one_hot(upper, size, dtype="float32")

    def call(self, images, training=None):
        if not training or (self.height_factor == 0 and self.width_factor == 0):
            return images
        ops = keras.ops
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        vertical = keras.random.uniform(
            (batch,),
            -self.height_factor * height,
            self.height_factor * height,
            seed=self.seed_generator,
        )
        horizontal = keras.random.uniform(
            (batch,),
            -self.width_factor * width,
            self.width_factor * width,
            seed=self.seed_generator,
        )
        images = ops.einsum(
            "bih,bhwc->biwc", self.interpolation_matrix(vertical, height), images
        )
        return ops.einsum(
            "bjw,biwc->bijc", self.interpolation_matrix(horizontal, width), images
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "height_factor": self.height_factor,
            "width_factor": self.width_factor,
            "seed": self.seed,
        }


def build_training_model(
    classifier: keras.Model,
    image_shape,
    mean,
    padding=((0, 0), (0, 0)),
    subtract_mean: bool = True,
    shift: float = 0.1,
    horizontal_flip: bool = True,
) -> keras.Model:
    """uint8 images in, logits out: preprocessing, augmentation (training only), classifier.

    Augmentation follows the example's ImageDataGenerator: a random shift up to
    ``shift`` of height and width with ``fill_mode="nearest"``, then a random horizontal
    flip. Keras' random layers are the identity outside training, so evaluation sees
    the plain centred images.
    """
    inputs = keras.Input(shape=tuple(image_shape), dtype="uint8", name="uint8_images")
    # Preprocessing and augmentation stay float32 under a mixed-precision policy (cheap,
    # and the mean subtraction is exact); the classifier follows the global policy.
    preprocess = Preprocess(
        tuple(image_shape),
        padding=padding,
        subtract_mean=subtract_mean,
        name="preprocess",
        dtype="float32",
    )
    x = preprocess(inputs)
    if subtract_mean:
        preprocess.mean.assign(keras.ops.convert_to_tensor(mean, dtype="float32"))
    if shift:
        x = RandomShift(shift, shift, name="random_shift", dtype="float32")(x)
    if horizontal_flip:
        x = keras.layers.RandomFlip("horizontal", name="random_flip", dtype="float32")(
            x
        )
    outputs = classifier(x)
    return keras.Model(inputs, outputs, name=f"train_{classifier.name}")


def count_parameters(model: keras.Model) -> int:
    """All weights, BatchNorm's moving statistics included (as Keras' summary counts)."""
    return int(sum(math.prod(weight.shape) for weight in model.weights))
