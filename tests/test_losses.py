"""Eq. 7's targets and loss against independent computations and Keras' label smoothing."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from smoothbench.train.losses import (  # noqa: E402
    SmoothedCrossEntropy,
    alpha_from_gamma,
    gamma_from_alpha,
    smoothed_cross_entropy,
    smoothed_targets,
)

CASES = [(2, 0.6), (2, 1.0), (10, 0.9), (10, 0.2), (47, 0.1), (100, 0.5), (1623, 0.8)]


def _numpy_loss(labels, logits, gamma):
    K = logits.shape[-1]
    q = np.full(logits.shape, (1 - gamma) / (K - 1), dtype=np.float64)
    q[np.arange(len(labels)), labels] = gamma
    z = logits.astype(np.float64)
    log_softmax = z - z.max(axis=1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
    return -(q * log_softmax).sum(axis=1)


def _batch(K, seed=0, size=16):
    rng = np.random.default_rng(seed)
    return rng.integers(0, K, size=size).astype(np.int32), (
        rng.normal(size=(size, K)) * 3
    ).astype(np.float32)


@pytest.mark.parametrize("K, gamma", CASES)
def test_targets_follow_eq7(K, gamma):
    labels, _ = _batch(K)
    q = keras.ops.convert_to_numpy(smoothed_targets(labels, K, gamma))
    np.testing.assert_allclose(q[np.arange(len(labels)), labels], gamma, rtol=1e-6)
    off = np.ones_like(q, dtype=bool)
    off[np.arange(len(labels)), labels] = False
    np.testing.assert_allclose(q[off], (1 - gamma) / (K - 1), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("K, gamma", CASES)
def test_loss_equals_an_independent_log_softmax_computation(K, gamma):
    labels, logits = _batch(K, seed=K)
    ours = keras.ops.convert_to_numpy(smoothed_cross_entropy(labels, logits, gamma))
    np.testing.assert_allclose(
        ours, _numpy_loss(labels, logits, gamma), atol=1e-6 * max(1, K / 100), rtol=1e-6
    )
    mean = float(
        keras.ops.convert_to_numpy(SmoothedCrossEntropy(gamma)(labels, logits))
    )
    assert mean == pytest.approx(_numpy_loss(labels, logits, gamma).mean(), abs=1e-6)


@pytest.mark.parametrize("K, gamma", CASES)
def test_loss_equals_keras_label_smoothing_with_the_converted_alpha(K, gamma):
    labels, logits = _batch(K, seed=K + 1)
    alpha = alpha_from_gamma(gamma, K)
    assert gamma_from_alpha(alpha, K) == pytest.approx(gamma)
    reference = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=alpha, reduction=None
    )
    expected = keras.ops.convert_to_numpy(
        reference(keras.ops.one_hot(labels, K), logits)
    )
    ours = keras.ops.convert_to_numpy(smoothed_cross_entropy(labels, logits, gamma))
    np.testing.assert_allclose(ours, expected, atol=1e-6 * max(1, K / 100), rtol=1e-6)


def test_gamma_one_is_plain_cross_entropy():
    labels, logits = _batch(10)
    reference = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction=None
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(smoothed_cross_entropy(labels, logits, 1.0)),
        keras.ops.convert_to_numpy(reference(labels, logits)),
        atol=1e-6,
    )


def test_passing_one_minus_gamma_as_keras_alpha_would_be_wrong():
    """The trap the reference warns about: alpha is not 1 - gamma."""
    labels, logits = _batch(10)
    wrong = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=0.1, reduction=None
    )
    difference = keras.ops.convert_to_numpy(
        wrong(keras.ops.one_hot(labels, 10), logits)
    ) - keras.ops.convert_to_numpy(smoothed_cross_entropy(labels, logits, 0.9))
    assert np.abs(difference).max() > 1e-3


@pytest.mark.parametrize("gamma", [0.1, 0.05, 1.01])
def test_gamma_outside_the_open_interval_is_refused(gamma):
    with pytest.raises(ValueError, match="gamma must lie in"):
        smoothed_targets(np.array([0, 1]), 10, gamma)


def test_loss_serializes_with_its_gamma():
    loss = SmoothedCrossEntropy(0.7)
    again = SmoothedCrossEntropy.from_config(loss.get_config())
    assert again.gamma == 0.7


def _label_smoothing_plus_plus_pair(K: int):
    """Two LS++ models around one small network (whose kernel has its own l2), C's logits
    set to the same non-zero values: one with weight decay on C, one without."""
    from smoothbench.models.resnet import L2_WEIGHT
    from smoothbench.train.losses import LabelSmoothingPlusPlusModel

    keras.utils.set_random_seed(0)
    network = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(K, kernel_regularizer=keras.regularizers.L2(L2_WEIGHT)),
        ]
    )
    logits = np.random.default_rng(1).normal(size=(K, K - 1)).astype(np.float32) * 3
    models = []
    for matrix_l2 in (L2_WEIGHT, 0.0):
        model = LabelSmoothingPlusPlusModel(network, K, 0.1, matrix_l2=matrix_l2)
        model.target_matrix.logits.assign(logits)
        models.append(model)
    return (*models, logits)


def test_weight_decay_on_c_adds_exactly_the_l2_of_its_logits():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradients taken with TensorFlow's GradientTape")
    import tensorflow as tf

    from smoothbench.models.resnet import L2_WEIGHT

    K = 7
    with_decay, without_decay, logits = _label_smoothing_plus_plus_pair(K)
    images = np.random.default_rng(2).normal(size=(16, 6)).astype(np.float32)
    labels = np.random.default_rng(3).integers(0, K, size=16).astype(np.int32)
    expected = L2_WEIGHT * np.sum(logits.astype(np.float64) ** 2)
    assert expected > 1e-3  # big enough to see against the loss's float32 rounding
    gradients, totals = [], []
    for model in (with_decay, without_decay):
        with tf.GradientTape() as tape:
            total = model.compute_loss(y=labels, y_pred=model(images))
        totals.append(float(total))
        gradients.append(
            tape.gradient(total, [model.target_matrix.logits, *model.network.weights])
        )
    assert totals[0] - totals[1] == pytest.approx(expected, rel=1e-4)
    # C's gradient gains 2 l2 C exactly; the network's is untouched
    np.testing.assert_allclose(
        gradients[0][0] - gradients[1][0], 2 * L2_WEIGHT * logits, rtol=1e-4, atol=1e-9
    )
    for decayed, plain in zip(gradients[0][1:], gradients[1][1:]):
        np.testing.assert_array_equal(decayed, plain)
    # the penalty is C's own: model.losses stays the network's weight decay
    assert float(with_decay.matrix_weight_decay()) == pytest.approx(expected, rel=1e-6)
    assert float(without_decay.matrix_weight_decay()) == 0.0
    assert [float(loss) for loss in with_decay.losses] == [
        float(loss) for loss in without_decay.losses
    ]


@pytest.mark.parametrize("weight_decay_on_c", [True, False])
def test_a_label_smoothing_plus_plus_run_gets_the_networks_l2_on_c_when_asked(
    weight_decay_on_c,
):
    from smoothbench.models.resnet import L2_WEIGHT
    from smoothbench.study import load_study
    from smoothbench.train.network import compile_for_method

    config = {
        "methods": {
            "lspp": {"experiments": "all", "weight_decay_on_c": weight_decay_on_c}
        },
        "experiments": {"digits": {"pooling": "global", "min_image_size": 0}},
    }
    settings = load_study(config).train_settings("digits", "lspp", "0.1", 0)
    network = keras.Sequential([keras.Input((6,)), keras.layers.Dense(10)])
    model = compile_for_method(network, settings, keras.optimizers.Adam(1e-3))
    assert model.matrix_l2 == (L2_WEIGHT if weight_decay_on_c else 0.0)


def test_a_negative_l2_on_c_is_refused():
    from smoothbench.train.losses import LabelSmoothingPlusPlusModel

    network = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="matrix_l2 must be at least 0"):
        LabelSmoothingPlusPlusModel(network, 3, 0.1, matrix_l2=-1e-4)
