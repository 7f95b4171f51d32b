"""The three methods' targets and losses: Mezzini's gamma (eq. 7), uniform label
smoothing (alpha) and Label Smoothing++ (learned targets).

    q_k = gamma                 if k is the true class
    q_k = (1 - gamma) / (K - 1) otherwise,          1/K < gamma <= 1

gamma = 1 is the one-hot target, so the loss is plain categorical cross-entropy. The
same targets in the usual uniform form q = (1 - alpha) onehot + alpha / K (Keras'
``label_smoothing``) have alpha = K (1 - gamma) / (K - 1); :func:`alpha_from_gamma`
converts. Never pass gamma or 1 - gamma as a library's alpha.

Uniform smoothing (``method: alpha``, Szegedy et al. 2016; Keras' ``label_smoothing``):
q = (1 - alpha) onehot + alpha / K, 0 <= alpha < 1.

Label Smoothing++ (``method: lspp``, seed 002): a learned K x (K-1) matrix of logits,
zeros at the start; a row's softmax, with a zero inserted at the diagonal, is C[y], and
the target is t = (1 - alpha) onehot(y) + alpha C[y]. The loss is half the sum of
-sum stop_gradient(t) log p, which trains only the network, and -sum stop_gradient(p) log t,
which trains only C (both logs of probabilities + 1e-6, as the method's code does). At
the start C[y] is uniform over the other classes, so t is eq. 7 with gamma = 1 - alpha.
With ``matrix_l2`` > 0 the training loss also holds Keras' L2 penalty on C's logits,
matrix_l2 x sum(logits^2): the method's code puts C under the optimizer's weight decay
by default (``--apply_wd 1``), and this network's weight decay is that penalty.

Written with ``keras.ops`` only, so it runs under any Keras 3 backend.
"""

from __future__ import annotations

import keras

# The methods' arithmetic (no Keras) lives in smoothbench.methods; re-exported here.
from smoothbench.methods import (  # noqa: F401
    alpha_from_gamma,
    gamma_from_alpha,
    gamma_in_range,
    gamma_range_text,
    target_entropy,
)


def smoothed_targets(labels, num_classes: int, gamma: float):
    """Eq. 7's target distribution for integer ``labels`` of shape (batch,) or (batch, 1)."""
    if not gamma_in_range(gamma, num_classes):
        raise ValueError(
            f"gamma must lie in {gamma_range_text(num_classes)}, got {gamma}"
        )
    labels = keras.ops.reshape(keras.ops.cast(labels, "int32"), (-1,))
    one_hot = keras.ops.one_hot(labels, num_classes, dtype="float32")
    off_value = (1.0 - gamma) / (num_classes - 1) if num_classes > 1 else 0.0
    return one_hot * (gamma - off_value) + off_value


def smoothed_cross_entropy(labels, logits, gamma: float):
    """Per-example -sum_k q_k log softmax(logits)_k with eq. 7's q."""
    return target_cross_entropy(
        smoothed_targets(labels, logits.shape[-1], gamma), logits
    )


@keras.saving.register_keras_serializable(package="smoothbench")
class SmoothedCrossEntropy(keras.losses.Loss):
    """Cross-entropy of logits against eq. 7's targets, from integer labels.

    ``SmoothedCrossEntropy(gamma=0.9)``; ``gamma=1`` is sparse categorical cross-entropy.
    """

    def __init__(
        self, gamma: float = 1.0, name: str = "smoothed_cross_entropy", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        return smoothed_cross_entropy(y_true, y_pred, self.gamma)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}


LOG_EPSILON = 1e-6  # Label Smoothing++ takes log(probability + 1e-6) on both sides


def uniform_targets(labels, num_classes: int, alpha: float):
    """q = (1 - alpha) onehot + alpha / K (Keras' ``label_smoothing=alpha``)."""
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    labels = keras.ops.reshape(keras.ops.cast(labels, "int32"), (-1,))
    one_hot = keras.ops.one_hot(labels, num_classes, dtype="float32")
    return one_hot * (1.0 - alpha) + alpha / num_classes


def fixed_targets(labels, num_classes: int, method: str, value: float):
    """The fixed target distribution of ``method`` ('gamma' or 'alpha') at ``value``."""
    if method == "gamma":
        return smoothed_targets(labels, num_classes, value)
    if method == "alpha":
        return uniform_targets(labels, num_classes, value)
    raise ValueError(f"method {method!r} has no fixed targets (known: gamma, alpha)")


def target_cross_entropy(targets, logits):
    """Per-example -sum_k targets_k log softmax(logits)_k."""
    return -keras.ops.sum(
        targets * keras.ops.log_softmax(keras.ops.cast(logits, "float32"), axis=-1),
        axis=-1,
    )


@keras.saving.register_keras_serializable(package="smoothbench")
class FixedTargetCrossEntropy(keras.losses.Loss):
    """Cross-entropy of logits against a fixed smoothing method's targets, from integer labels:
    ``FixedTargetCrossEntropy("alpha", 0.1)``; ("gamma", 1.0) is sparse categorical cross-entropy."""

    def __init__(
        self,
        method: str = "gamma",
        value: float = 1.0,
        name: str = "fixed_target_cross_entropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.method, self.value = str(method), float(value)

    def call(self, y_true, y_pred):
        targets = fixed_targets(y_true, y_pred.shape[-1], self.method, self.value)
        return target_cross_entropy(targets, y_pred)

    def get_config(self):
        return {**super().get_config(), "method": self.method, "value": self.value}


def learned_target_matrix(matrix_logits):
    """K x (K-1) logits -> the K x K matrix C: each row's softmax with a 0 inserted at the diagonal."""
    num_classes = matrix_logits.shape[0]
    rows = keras.ops.softmax(matrix_logits, axis=-1)
    # Row i of the K x (K-1) matrix fills columns j != i: column j takes entry j for j < i, entry j - 1 for j > i.
    columns = keras.ops.arange(num_classes)
    row_index = keras.ops.expand_dims(keras.ops.arange(num_classes), 1)
    source = keras.ops.where(columns < row_index, columns, columns - 1)
    source = keras.ops.clip(source, 0, num_classes - 2)
    gathered = keras.ops.take_along_axis(rows, keras.ops.cast(source, "int32"), axis=1)
    off_diagonal = 1.0 - keras.ops.eye(num_classes, dtype="float32")
    return gathered * off_diagonal


def learned_targets(labels, matrix, alpha: float):
    """t = (1 - alpha) onehot(y) + alpha C[y] for integer ``labels`` and a K x K matrix C."""
    labels = keras.ops.reshape(keras.ops.cast(labels, "int32"), (-1,))
    num_classes = matrix.shape[0]
    one_hot = keras.ops.one_hot(labels, num_classes, dtype="float32")
    return (1.0 - alpha) * one_hot + alpha * keras.ops.take(matrix, labels, axis=0)


def label_smoothing_plus_plus_terms(labels, logits, matrix_logits, alpha: float):
    """Per-example (network term, matrix term) of Label Smoothing++'s loss.

    network term: -sum stop_gradient(t) log(p + eps), gradients reach only the network;
    matrix term:  -sum stop_gradient(p) log(t + eps), gradients reach only the C logits.
    The loss is their mean, (network + matrix) / 2.
    """
    probabilities = keras.ops.softmax(keras.ops.cast(logits, "float32"), axis=-1)
    targets = learned_targets(labels, learned_target_matrix(matrix_logits), alpha)
    network = -keras.ops.sum(
        keras.ops.stop_gradient(targets) * keras.ops.log(probabilities + LOG_EPSILON),
        axis=-1,
    )
    matrix = -keras.ops.sum(
        keras.ops.stop_gradient(probabilities) * keras.ops.log(targets + LOG_EPSILON),
        axis=-1,
    )
    return network, matrix


class LearnedTargetMatrix(keras.layers.Layer):
    """Holds Label Smoothing++'s K x (K-1) logits (zeros at the start); ``matrix()`` is C."""

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.logits = self.add_weight(
            shape=(self.num_classes, self.num_classes - 1),
            initializer="zeros",
            trainable=True,
            name="c_logits",
        )
        self.built = True  # its one weight exists from the start; it takes no input

    def matrix(self):
        return learned_target_matrix(self.logits)

    def call(self, inputs):  # not part of the forward pass; the loss reads ``logits``
        return inputs


class LabelSmoothingPlusPlusModel(keras.Model):
    """A network trained with Label Smoothing++: its outputs are the network's logits, its
    loss the method's split symmetric cross-entropy, and C is one more trainable weight
    (the same optimizer updates it, as in the method's code).

    ``matrix_l2`` > 0 adds ``keras.regularizers.L2(matrix_l2)`` of C's logits to the
    training loss, the weight decay the method's code gives C by default; 0 leaves C
    unregularised. The penalty is added in :meth:`compute_loss`, not as the weight's
    regularizer, so that ``self.losses`` stays the network's own weight decay."""

    def __init__(
        self,
        network: keras.Model,
        num_classes: int,
        alpha: float = 0.1,
        matrix_l2: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"Label Smoothing++ needs 0 < alpha < 1, got {alpha}")
        if not matrix_l2 >= 0.0:
            raise ValueError(f"matrix_l2 must be at least 0, got {matrix_l2}")
        self.network = network
        self.alpha = float(alpha)
        self.matrix_l2 = float(matrix_l2)
        self.target_matrix = LearnedTargetMatrix(
            num_classes, name="label_smoothing_plus_plus"
        )

    def matrix_weight_decay(self):
        """The L2 penalty on C's logits that the training loss holds (0 without one)."""
        if not self.matrix_l2:
            return keras.ops.zeros((), dtype="float32")
        return keras.regularizers.L2(self.matrix_l2)(self.target_matrix.logits)

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        network, matrix = label_smoothing_plus_plus_terms(
            y, y_pred, self.target_matrix.logits, self.alpha
        )
        loss = keras.ops.mean((network + matrix) / 2.0)
        if self.matrix_l2:
            loss = loss + self.matrix_weight_decay()
        # the network's weight decay, as compile's loss would add
        regularization = self.losses
        return loss + sum(regularization) if regularization else loss
