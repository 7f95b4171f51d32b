"""Calibration of a classifier's validation predictions, in NumPy (no backend needed).

- expected calibration error (ECE): equal-width confidence bins over (0, 1] (15 by
  default, as Guo et al. 2017 and Muller et al. 2019), sum over bins of
  (bin size / n) x |accuracy in bin - mean confidence in bin|; confidence is the top
  softmax probability, accuracy whether the top class is the label;
- negative log-likelihood: mean -log p(label);
- Brier score: mean over examples of sum_k (p_k - onehot_k)^2 (0 best, 2 worst);
- mean confidence: mean top probability.

Every function takes float logits (n, K) or probabilities and integer labels (n,).
"""

from __future__ import annotations

import numpy as np

DEFAULT_BINS = 15


def softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    exp = np.exp(z)
    return exp / exp.sum(axis=1, keepdims=True)


def log_softmax(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def reliability_bins(probabilities, labels, bins: int = DEFAULT_BINS) -> list[dict]:
    """Per equal-width confidence bin: its edges, example count, mean confidence and accuracy
    (None where empty). Bin b holds confidences in (b/bins, (b+1)/bins]."""
    probabilities, labels = (
        np.asarray(probabilities, dtype=np.float64),
        np.asarray(labels).reshape(-1),
    )
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # b / bins exactly as the bin edges print, no confidence x bins rounding
    uppers = np.arange(1, bins + 1) / bins
    index = np.clip(np.searchsorted(uppers, confidence, side="left"), 0, bins - 1)
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        table.append(
            {
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "count": count,
                "confidence": float(confidence[members].mean()) if count else None,
                "accuracy": float(correct[members].mean()) if count else None,
            }
        )
    return table


def error_from_bins(table: list[dict]) -> float:
    """ECE of :func:`reliability_bins`' table: sum over bins of (share of examples) x |accuracy - confidence|."""
    total = sum(row["count"] for row in table)
    return float(
        sum(
            row["count"] / total * abs(row["accuracy"] - row["confidence"])
            for row in table
            if row["count"]
        )
    )


def expected_calibration_error(
    probabilities, labels, bins: int = DEFAULT_BINS
) -> float:
    return error_from_bins(reliability_bins(probabilities, labels, bins))


def negative_log_likelihood(logits, labels) -> float:
    labels = np.asarray(labels).reshape(-1)
    return float(-log_softmax(logits)[np.arange(len(labels)), labels].mean())


def brier_score(probabilities, labels) -> float:
    probabilities, labels = (
        np.asarray(probabilities, dtype=np.float64),
        np.asarray(labels).reshape(-1),
    )
    one_hot = np.zeros_like(probabilities)
    one_hot[np.arange(len(labels)), labels] = 1.0
    return float(((probabilities - one_hot) ** 2).sum(axis=1).mean())


def calibration_summary(logits, labels, bins: int = DEFAULT_BINS) -> dict:
    """accuracy, ECE, NLL, Brier, mean confidence, and the reliability bins of ``logits``."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    probabilities = softmax(logits)
    table = reliability_bins(probabilities, labels, bins)
    return {
        "accuracy": float((probabilities.argmax(axis=1) == labels).mean()),
        "ece": error_from_bins(table),
        "nll": negative_log_likelihood(logits, labels),
        "brier": brier_score(probabilities, labels),
        "confidence": float(probabilities.max(axis=1).mean()),
        "bins": table,
    }
