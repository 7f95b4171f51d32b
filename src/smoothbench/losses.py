"""Mezzini's smoothed targets (eq. 7) and the cross-entropy against them.

    q_k = gamma                 if k is the true class
    q_k = (1 - gamma) / (K - 1) otherwise,          1/K < gamma <= 1

gamma = 1 is the one-hot target, so the loss is plain categorical cross-entropy. The
same targets in the usual uniform form q = (1 - alpha) onehot + alpha / K (Keras'
``label_smoothing``) have alpha = K (1 - gamma) / (K - 1); :func:`alpha_from_gamma`
converts. Never pass gamma or 1 - gamma as a library's alpha.

Written with ``keras.ops`` only, so it runs under any Keras 3 backend.
"""

from __future__ import annotations

import keras


def alpha_from_gamma(gamma: float, num_classes: int) -> float:
    """The uniform-smoothing alpha giving the same targets as ``gamma``."""
    return num_classes * (1.0 - gamma) / (num_classes - 1)


def gamma_from_alpha(alpha: float, num_classes: int) -> float:
    return 1.0 - alpha * (num_classes - 1) / num_classes


def smoothed_targets(labels, num_classes: int, gamma: float):
    """Eq. 7's target distribution for integer ``labels`` of shape (batch,) or (batch, 1)."""
    if not 1.0 / num_classes < gamma <= 1.0:
        raise ValueError(f"gamma must lie in (1/K, 1] = ({1 / num_classes:.4g}, 1], got {gamma}")
    labels = keras.ops.reshape(keras.ops.cast(labels, "int32"), (-1,))
    one_hot = keras.ops.one_hot(labels, num_classes, dtype="float32")
    off_value = (1.0 - gamma) / (num_classes - 1) if num_classes > 1 else 0.0
    return one_hot * (gamma - off_value) + off_value


def smoothed_cross_entropy(labels, logits, gamma: float):
    """Per-example -sum_k q_k log softmax(logits)_k with eq. 7's q."""
    logits = keras.ops.cast(logits, "float32")
    num_classes = logits.shape[-1]
    targets = smoothed_targets(labels, num_classes, gamma)
    return -keras.ops.sum(targets * keras.ops.log_softmax(logits, axis=-1), axis=-1)


@keras.saving.register_keras_serializable(package="smoothbench")
class SmoothedCrossEntropy(keras.losses.Loss):
    """Cross-entropy of logits against eq. 7's targets, from integer labels.

    ``SmoothedCrossEntropy(gamma=0.9)``; ``gamma=1`` is sparse categorical cross-entropy.
    """

    def __init__(self, gamma: float = 1.0, name: str = "smoothed_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        return smoothed_cross_entropy(y_true, y_pred, self.gamma)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}
