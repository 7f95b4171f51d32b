"""The paper's ResNets: structure, parameter counts, input handling, backend neutrality."""

from __future__ import annotations

import re

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import REPOSITORY  # noqa: E402

from smoothbench.models import resnet  # noqa: E402
from smoothbench.models.shapes import final_map_size, padded_shape, padding_to  # noqa: E402


def test_resnet20_v1_has_the_examples_parameter_count():
    model = resnet.build_resnet("resnet_v1", 20, (32, 32, 3), 10)
    assert resnet.count_parameters(model) == 274_442
    assert resnet.count_parameters(model) == model.count_params()


@pytest.mark.parametrize("num_classes, expected", [(10, 2.50e6), (100, 2.52e6)])
def test_resnet83_v2_parameter_count_is_within_one_percent_of_the_reference(
    num_classes, expected
):
    model = resnet.build_resnet("resnet_v2", 83, (32, 32, 3), num_classes)
    assert abs(resnet.count_parameters(model) - expected) / expected < 0.01


def test_resnet_v1_structure_follows_the_example():
    model = resnet.build_resnet("resnet_v1", 20, (32, 32, 3), 10)
    convolutions = [
        layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    ]
    # stem + 3 stacks x 3 blocks x 2 convs + 2 projection shortcuts
    assert len(convolutions) == 1 + 18 + 2
    for layer in convolutions:
        assert layer.kernel_initializer.__class__.__name__ == "HeNormal"
        assert isinstance(layer.kernel_regularizer, keras.regularizers.L2)
        assert layer.kernel_regularizer.l2 == pytest.approx(1e-4)
        assert layer.use_bias
    shortcuts = [layer for layer in convolutions if "shortcut" in layer.name]
    assert [
        (layer.kernel_size, layer.strides, layer.filters) for layer in shortcuts
    ] == [((1, 1), (2, 2), 32), ((1, 1), (2, 2), 64)]
    assert not any("shortcut_bn" in layer.name for layer in model.layers)
    pool = model.get_layer("pool")
    assert isinstance(pool, keras.layers.AveragePooling2D) and pool.pool_size == (8, 8)
    # one l2 term per convolution, none on the Dense layer
    assert len(model.losses) == len(convolutions)


def test_resnet_v2_widths_and_preactivation():
    model = resnet.build_resnet("resnet_v2", 29, (32, 32, 3), 10)  # n = 3
    widths = {
        layer.name: layer.filters
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
    }
    assert widths["stage1_block1_1_conv"] == 16 and widths["stage1_block1_3_conv"] == 64
    assert (
        widths["stage2_block1_2_conv"] == 64 and widths["stage2_block1_3_conv"] == 128
    )
    assert (
        widths["stage3_block1_2_conv"] == 128 and widths["stage3_block1_3_conv"] == 256
    )
    names = {layer.name for layer in model.layers}
    assert "stage1_block1_1_bn" not in names  # the first block skips its first BN-ReLU
    assert {"stage2_block1_1_bn", "stage1_block2_1_bn", "head_bn", "head_relu"} <= names
    assert {f"stage{stage}_block1_shortcut_conv" for stage in (1, 2, 3)} <= names
    assert "stage1_block2_shortcut_conv" not in names


@pytest.mark.parametrize("model_name, depth", [("resnet_v1", 21), ("resnet_v2", 30)])
def test_wrong_depth_is_refused(model_name, depth):
    with pytest.raises(ValueError, match="depth must be"):
        resnet.build_resnet(model_name, depth, (32, 32, 3), 10)


def test_fixed_pool_refuses_28_pixel_inputs_and_padding_fixes_it():
    assert (
        final_map_size(28) == 7 and final_map_size(32) == 8 and final_map_size(72) == 18
    )
    with pytest.raises(ValueError, match="smaller than the fixed 8x8 pool"):
        resnet.build_resnet("resnet_v1", 20, (28, 28, 1), 10)
    assert padding_to((28, 28, 1), 32) == ((2, 2), (2, 2))
    assert padded_shape((28, 28, 1), 32) == (32, 32, 1)
    assert padding_to((72, 72, 3), 32) == ((0, 0), (0, 0))
    assert resnet.build_resnet(
        "resnet_v1", 20, (28, 28, 1), 10, pooling="global"
    ).output_shape == (None, 10)


def test_72_pixel_inputs_keep_a_2x2_map_under_the_fixed_pool():
    model = resnet.build_resnet("resnet_v1", 20, (72, 72, 3), 10)
    assert model.get_layer("pool").output.shape[1:] == (2, 2, 64)
    assert model.get_layer("flatten").output.shape[-1] == 256


def test_preprocessing_scales_centres_and_pads_and_augmentation_is_off_at_inference():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 28, 28, 1), dtype=np.uint8)
    mean = rng.random((28, 28, 1)).astype(np.float32)
    classifier = resnet.build_resnet("resnet_v1", 8, (32, 32, 1), 10)
    model = resnet.build_training_model(
        classifier, (28, 28, 1), mean, padding=padding_to((28, 28, 1), 32)
    )
    centred = model.get_layer("preprocess")(images)
    expected = np.pad(images / 255.0 - mean, ((0, 0), (2, 2), (2, 2), (0, 0)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(centred), expected, atol=1e-6)
    # The classifier is given the very float32 images the model's preprocessing made,
    # not ``expected`` (computed in float64): with that, outputs once differed by 2.6e-5
    first = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(
        first,
        keras.ops.convert_to_numpy(classifier(centred, training=False)),
        atol=1e-5,
    )
    # While training, batch normalisation uses the batch's statistics, so compare with
    # the classifier in training mode on the same batch: the same without augmentation
    # (a model built with shift 0 and no flip), different with it.
    plain = keras.ops.convert_to_numpy(classifier(centred, training=True))
    still = resnet.build_training_model(
        classifier,
        (28, 28, 1),
        mean,
        padding=padding_to((28, 28, 1), 32),
        shift=0.0,
        horizontal_flip=False,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(still(images, training=True)), plain, atol=1e-5
    )
    augmented = keras.ops.convert_to_numpy(model(images, training=True))
    assert not np.allclose(augmented, plain, atol=1e-3)  # shift and flip act


@pytest.mark.parametrize(
    "module",
    ["models/resnet.py", "train/losses.py", "data/batches.py", "models/shapes.py"],
)
def test_model_loss_and_batches_use_only_the_backend_neutral_api(module):
    source = (REPOSITORY / "src" / "smoothbench" / module).read_text()
    assert not re.search(
        r"^\s*(import|from)\s+(tensorflow|jax|torch)\b", source, re.MULTILINE
    )
    assert not re.search(r"\btf\.", source)
