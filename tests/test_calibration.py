"""ECE, NLL, Brier and confidence against independent NumPy computations."""

from __future__ import annotations

import numpy as np
import pytest

from smoothbench.train import calibration

PROBABILITIES = np.array(
    [
        [0.90, 0.05, 0.05],  # right, confidence 0.90
        [0.10, 0.80, 0.10],  # right, 0.80
        [0.60, 0.30, 0.10],  # wrong (label 1), 0.60
        [0.20, 0.20, 0.60],  # right, 0.60
        [0.34, 0.33, 0.33],  # wrong (label 2), 0.34
        [0.05, 0.93, 0.02],  # wrong (label 0), 0.93
    ]
)
LABELS = np.array([0, 1, 1, 2, 2, 0])


def _by_hand_ece(probabilities, labels, bins):
    """ECE written the slow, obvious way: loop over examples into bins (lower, upper]."""
    members = [[] for _ in range(bins)]
    for row, label in zip(probabilities, labels):
        confidence = row.max()
        for b in range(bins):
            if b / bins < confidence <= (b + 1) / bins:
                members[b].append((confidence, row.argmax() == label))
    total = 0.0
    for group in members:
        if group:
            confidence = sum(c for c, _ in group) / len(group)
            accuracy = sum(r for _, r in group) / len(group)
            total += len(group) / len(labels) * abs(accuracy - confidence)
    return total


def test_ece_matches_a_loop_written_by_hand():
    # bins of width 1/15: 0.90 and 0.93 share (0.8667, 0.9333]; 0.60 twice in (0.5333, 0.6]
    expected = _by_hand_ece(PROBABILITIES, LABELS, 15)
    assert calibration.expected_calibration_error(
        PROBABILITIES, LABELS
    ) == pytest.approx(expected, abs=1e-12)
    # the same by the formula, bin by bin: {0.34: wrong}, {0.6, 0.6: 1 of 2}, {0.8: right}, {0.9, 0.93: 1 of 2}
    by_formula = (
        (1 / 6) * 0.34
        + (2 / 6) * abs(0.5 - 0.6)
        + (1 / 6) * 0.2
        + (2 / 6) * abs(0.5 - 0.915)
    )
    assert expected == pytest.approx(by_formula, abs=1e-12)


def test_nll_brier_and_confidence_match_numpy():
    logits = np.log(PROBABILITIES)
    nll = -np.mean([np.log(PROBABILITIES[i, LABELS[i]]) for i in range(len(LABELS))])
    brier = np.mean(
        [
            sum((PROBABILITIES[i, k] - (k == LABELS[i])) ** 2 for k in range(3))
            for i in range(len(LABELS))
        ]
    )
    summary = calibration.calibration_summary(logits, LABELS)
    assert summary["nll"] == pytest.approx(nll, abs=1e-12)
    assert summary["brier"] == pytest.approx(brier, abs=1e-12)
    assert summary["confidence"] == pytest.approx(
        PROBABILITIES.max(axis=1).mean(), abs=1e-12
    )
    assert summary["accuracy"] == pytest.approx(3 / 6)
    assert summary["ece"] == pytest.approx(
        _by_hand_ece(PROBABILITIES, LABELS, 15), abs=1e-12
    )
    assert (
        sum(row["count"] for row in summary["bins"]) == len(LABELS)
        and len(summary["bins"]) == 15
    )


def test_a_perfectly_calibrated_classifier_has_ece_near_zero():
    rng = np.random.default_rng(0)
    n, K = 200_000, 4
    confidence = rng.uniform(0.3, 1.0, size=n)
    predicted = rng.integers(0, K, size=n)
    probabilities = np.full((n, K), 0.0)
    probabilities[np.arange(n), predicted] = confidence
    # the rest spread over the other classes, each below the top one
    for k in range(1, K):
        probabilities[np.arange(n), (predicted + k) % K] = (1 - confidence) / (K - 1)
    # the label is the predicted class with probability exactly its confidence
    right = rng.uniform(size=n) < confidence
    labels = np.where(right, predicted, (predicted + rng.integers(1, K, size=n)) % K)
    assert calibration.expected_calibration_error(probabilities, labels) < 0.01
    # an overconfident one (same predictions, confidence pushed to 0.99) is far off
    overconfident = probabilities.copy()
    overconfident[np.arange(n), predicted] = 0.99
    overconfident[np.arange(n), (predicted + 1) % K] = 0.01
    for k in range(2, K):
        overconfident[np.arange(n), (predicted + k) % K] = 0.0
    assert calibration.expected_calibration_error(overconfident, labels) > 0.2


def test_a_confidence_on_a_bin_edge_falls_in_the_lower_bin():
    # 0.8 = 12/15 is the upper edge of bin 11, (0.7333, 0.8]; 0.8 x 15 is 12.000000000000002 in floating point
    bins = calibration.reliability_bins(np.array([[0.8, 0.2]]), np.array([0]))
    assert [row["count"] for row in bins].index(1) == 11


def test_softmax_is_stable_for_large_logits():
    logits = np.array([[1000.0, 0.0, -1000.0]])
    np.testing.assert_allclose(calibration.softmax(logits), [[1.0, 0.0, 0.0]])
    assert calibration.negative_log_likelihood(logits, np.array([1])) == pytest.approx(
        1000.0
    )
