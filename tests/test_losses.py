"""Eq. 7's targets and loss against independent computations and Keras' label smoothing."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from smoothbench.losses import (  # noqa: E402
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
