"""The smoothing methods as numbers, without Keras: their names, the range of each
method's value, and the arithmetic of their targets (see :mod:`smoothbench.train.losses` for
the losses themselves, which re-exports these).

- ``gamma`` (Mezzini's eq. 7): q_k = gamma for the true class, (1 - gamma) / (K - 1)
  otherwise, 1/K < gamma <= 1;
- ``alpha`` (uniform smoothing): q = (1 - alpha) onehot + alpha / K, 0 <= alpha < 1;
- ``lspp`` (Label Smoothing++): learned targets, alpha in (0, 1).

This module is the one owner of the gamma in (1/K, 1] rule: the config, the tables and
the losses all ask :func:`gamma_in_range`.
"""

from __future__ import annotations

import math

METHODS = ("gamma", "alpha", "lspp")


def gamma_in_range(gamma: float, num_classes: int) -> bool:
    """1/K < gamma <= 1, decided without floating-point noise (0.1 x 10 is not > 1)."""
    return round(gamma * num_classes, 9) > 1 and gamma <= 1


def gamma_range_text(num_classes: int) -> str:
    """``(0.1, 1]``: the interval :func:`gamma_in_range` accepts, for messages."""
    return f"(1/K, 1] = ({1 / num_classes:.4g}, 1]"


def value_in_range(method: str, value: float) -> bool:
    """alpha in [0, 1) for uniform smoothing, (0, 1) for Label Smoothing++."""
    low_ok = value >= 0 if method == "alpha" else value > 0
    return low_ok and value < 1


def value_range_text(method: str) -> str:
    return "[0, 1)" if method == "alpha" else "(0, 1)"


def gamma_grid(
    num_classes: int,
    denominator: int = 10,
    min_numerator: int = 1,
    max_numerator: int = 10,
) -> list[float]:
    """The paper's grid: k / denominator, descending, kept where gamma lies in (1/K, 1]."""
    numerators = range(max_numerator, min_numerator - 1, -1)
    return [
        k / denominator
        for k in numerators
        if gamma_in_range(k / denominator, num_classes)
    ]


def alpha_from_gamma(gamma: float, num_classes: int) -> float:
    """The uniform-smoothing alpha giving the same targets as ``gamma``."""
    return num_classes * (1.0 - gamma) / (num_classes - 1)


def gamma_from_alpha(alpha: float, num_classes: int) -> float:
    return 1.0 - alpha * (num_classes - 1) / num_classes


def equivalent_gamma(method: str, value: float, num_classes: int) -> float:
    """The true class's target mass of a run, on eq. 7's γ axis: a γ run's γ; uniform α's
    1 - α + α/K (:func:`gamma_from_alpha`, the same targets); Label Smoothing++'s 1 - α,
    the mass its targets (1 - α) onehot + α C[y] give the true class (C's diagonal is 0),
    and exactly eq. 7's targets at the start, when C[y] is uniform over the others."""
    if method == "gamma":
        return value
    if method == "alpha":
        return gamma_from_alpha(value, num_classes)
    if method == "lspp":
        return 1.0 - value
    raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")


def target_entropy(gamma: float, num_classes: int) -> float:
    """H(q) in nats for eq. 7's targets: the least value the smoothed loss can take."""
    entropy = -gamma * math.log(gamma) if gamma > 0 else 0.0
    if gamma < 1:
        other = (1 - gamma) / (num_classes - 1)
        entropy -= (1 - gamma) * math.log(other)
    return entropy
