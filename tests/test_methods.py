"""The seed methods beside eq. 7: uniform smoothing (alpha) and Label Smoothing++."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from smoothbench import run_record  # noqa: E402
from smoothbench.data.array_store import open_prepared  # noqa: E402
from smoothbench.data.preparation import prepare  # noqa: E402
from smoothbench.study import load_study  # noqa: E402
from smoothbench.train import loop, losses  # noqa: E402
from smoothbench.train.network import build_model, compile_for_method  # noqa: E402


def _batch(K, seed=0, size=16):
    rng = np.random.default_rng(seed)
    return rng.integers(0, K, size=size).astype(np.int32), (
        rng.normal(size=(size, K)) * 3
    ).astype(np.float32)


@pytest.mark.parametrize(
    "K, gamma", [(2, 0.6), (10, 0.9), (10, 0.2), (47, 0.5), (1623, 0.8)]
)
def test_alpha_from_gamma_builds_the_same_targets(K, gamma):
    labels, _ = _batch(K)
    alpha = losses.alpha_from_gamma(gamma, K)
    by_gamma = keras.ops.convert_to_numpy(
        losses.fixed_targets(labels, K, "gamma", gamma)
    )
    by_alpha = keras.ops.convert_to_numpy(
        losses.fixed_targets(labels, K, "alpha", alpha)
    )
    np.testing.assert_allclose(by_alpha, by_gamma, rtol=0, atol=1e-7)
    # and Keras' own label smoothing agrees with the alpha form
    one_hot = np.eye(K, dtype=np.float32)[labels]
    np.testing.assert_allclose(by_alpha, one_hot * (1 - alpha) + alpha / K, atol=1e-7)


def test_uniform_alpha_rejects_values_outside_its_range():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        losses.uniform_targets(np.array([0]), 10, 1.0)


def test_label_smoothing_plus_plus_starts_at_eq7_with_gamma_one_minus_alpha():
    K, alpha = 7, 0.1
    labels, _ = _batch(K)
    matrix = losses.learned_target_matrix(keras.ops.zeros((K, K - 1)))
    start = keras.ops.convert_to_numpy(losses.learned_targets(labels, matrix, alpha))
    eq7 = keras.ops.convert_to_numpy(losses.smoothed_targets(labels, K, 1 - alpha))
    np.testing.assert_allclose(start, eq7, atol=1e-7)


def test_the_learned_matrix_has_rows_summing_to_one_and_a_zero_diagonal():
    K = 6
    logits = np.random.default_rng(1).normal(size=(K, K - 1)).astype(np.float32)
    matrix = keras.ops.convert_to_numpy(losses.learned_target_matrix(logits))
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)
    # row i spreads the softmax of logits[i] over the classes other than i, in order
    for row in range(K):
        others = [column for column in range(K) if column != row]
        np.testing.assert_allclose(
            matrix[row, others],
            np.exp(logits[row]) / np.exp(logits[row]).sum(),
            atol=1e-6,
        )


def test_each_term_reaches_only_its_own_parameters():
    K, alpha = 5, 0.1
    labels, logits = _batch(K)
    # stands for the network: it reaches the loss only through its logits
    logits = tf.Variable(logits)
    matrix_logits = tf.Variable(
        np.random.default_rng(2).normal(size=(K, K - 1)).astype(np.float32)
    )
    with tf.GradientTape(persistent=True) as tape:
        network, matrix = losses.label_smoothing_plus_plus_terms(
            labels, logits, matrix_logits, alpha
        )
        network, matrix = tf.reduce_mean(network), tf.reduce_mean(matrix)
    assert tape.gradient(network, matrix_logits) is None  # the first term never moves C
    # the second term never moves the network
    assert tape.gradient(matrix, logits) is None
    assert float(tf.reduce_max(tf.abs(tape.gradient(network, logits)))) > 0
    assert float(tf.reduce_max(tf.abs(tape.gradient(matrix, matrix_logits)))) > 0


TINY = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1",
        "depth": 8,
        "epochs": 2,
        "batch_size": 64,
        "pooling": "global",
        "min_image_size": 0,
        "augmentation": {"horizontal_flip": False},
        "gammas": [1.0, 0.9],
    },
    "methods": {
        "alpha": {"values": [0.1], "experiments": ["digits"]},
        "lspp": {"values": [0.1], "experiments": "all"},
    },
    "compute": {"threads_per_job": 2},
    "experiments": {"digits": {}},
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    study = load_study(TINY)
    folder = tmp_path_factory.mktemp("prepared") / "digits"
    prepare(study.data_settings("digits"), folder)
    manifest, arrays = open_prepared(folder)
    return study, folder, arrays


def _first_step_loss(settings, arrays):
    keras.utils.set_random_seed(settings["seed"])
    _, model = build_model(settings, np.asarray(arrays["mean"]))
    model = compile_for_method(model, settings, keras.optimizers.Adam(1e-3))
    images, labels = (
        np.asarray(arrays["train_images"][:64]),
        np.asarray(arrays["train_labels"][:64]),
    )
    return float(model.train_on_batch(images, labels, return_dict=True)["loss"]), model


def test_alpha_and_gamma_runs_take_the_same_first_step(digits):
    study, _, arrays = digits
    K = 10
    alpha = losses.alpha_from_gamma(0.9, K)
    by_gamma = study.train_settings("digits", "gamma", "0.9", 0)
    by_alpha = {**by_gamma, "method": "alpha", "value": alpha}
    gamma_loss, _ = _first_step_loss(by_gamma, arrays)
    alpha_loss, _ = _first_step_loss(by_alpha, arrays)
    assert gamma_loss == pytest.approx(alpha_loss, abs=1e-6)
    other_loss, _ = _first_step_loss({**by_gamma, "value": 1.0}, arrays)
    assert abs(other_loss - gamma_loss) > 1e-3  # the check can tell methods apart


def test_one_label_smoothing_plus_plus_step_splits_its_gradients(digits):
    study, _, arrays = digits
    settings = study.train_settings("digits", "lspp", "0.1", 0)
    keras.utils.set_random_seed(0)
    _, network = build_model(settings, np.asarray(arrays["mean"]))
    model = compile_for_method(network, settings, keras.optimizers.Adam(1e-3))
    images, labels = (
        np.asarray(arrays["train_images"][:32]),
        np.asarray(arrays["train_labels"][:32]),
    )
    matrix_logits = model.target_matrix.logits
    network_variables = [
        variable
        for variable in model.trainable_variables
        if variable is not matrix_logits
    ]
    assert len(network_variables) == len(model.trainable_variables) - 1
    with tf.GradientTape(persistent=True) as tape:
        logits = model(images, training=True)
        total = model.compute_loss(x=images, y=labels, y_pred=logits)
        network_term, matrix_term = losses.label_smoothing_plus_plus_terms(
            labels, logits, matrix_logits, settings["value"]
        )
        first = tf.reduce_mean(network_term) / 2 + tf.add_n(model.losses)
        second = tf.reduce_mean(matrix_term) / 2
    # C's gradient is the second term's alone; the network's is the first term's (plus weight decay)
    np.testing.assert_allclose(
        tape.gradient(total, matrix_logits),
        tape.gradient(second, matrix_logits),
        atol=1e-7,
    )
    for total_gradient, first_gradient in zip(
        tape.gradient(total, network_variables), tape.gradient(first, network_variables)
    ):
        np.testing.assert_allclose(total_gradient, first_gradient, atol=1e-6)
    assert tape.gradient(first, matrix_logits) is None
    assert all(
        gradient is None for gradient in tape.gradient(second, network_variables)
    )
    # and one optimizer step moves C away from the uniform start, keeping it a distribution per row
    model.train_on_batch(images, labels)
    matrix = keras.ops.convert_to_numpy(model.target_matrix.matrix())
    assert np.abs(matrix - (1 - np.eye(10)) / 9).max() > 1e-5
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)


def test_a_label_smoothing_plus_plus_run_saves_its_matrix(digits, tmp_path):
    study, prepared, _ = digits
    settings = study.train_settings("digits", "lspp", "0.1", 0)
    metrics = loop.train(
        settings, study.compute_settings(), prepared, tmp_path, log=lambda message: None
    )
    matrix = np.load(tmp_path / "c_matrix.npy")
    assert matrix.shape == (10, 10) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)
    assert (
        metrics["method"] == "lspp"
        and metrics["value"] == 0.1
        and metrics["initial_equivalent_gamma"] == 0.9
    )
    assert "gamma" not in metrics
    assert metrics["c_matrix_file"] == "c_matrix.npy"
    history = run_record.read_history(tmp_path / "history.csv")
    assert all(
        np.isfinite(row["val_loss"]) and 0 <= row["val_ece"] <= 1 for row in history
    )


def test_each_method_has_one_equivalent_gamma_the_true_class_target_mass():
    from smoothbench.methods import equivalent_gamma

    assert equivalent_gamma("gamma", 0.8, 10) == 0.8
    assert equivalent_gamma("alpha", 0.1, 10) == pytest.approx(0.91)
    assert equivalent_gamma("lspp", 0.1, 10) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="unknown method 'beta'"):
        equivalent_gamma("beta", 0.1, 10)
