"""Paired differences over seeds, the methods table and calibration cells from run records."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from smoothbench.results import analysis
from smoothbench.study import load_study

STUDY = load_study(
    {
        "data": {"download": False},
        "protocol": {
            "model": "resnet_v1",
            "depth": 20,
            "pooling": "global",
            "min_image_size": 0,
            "gammas": [1.0, 0.9],
        },
        "seeds": [0, 1, 2],
        "methods": {
            "alpha": {"values": [0.1], "experiments": "all"},
            "lspp": {"experiments": "all"},
        },
        "experiments": {"digits": {}},
    }
)


def _runs(accuracies: dict) -> pd.DataFrame:
    """(method, value) -> per-seed accuracies, as collect_runs' frame (with an ECE per run)."""
    records = []
    for (method, value), values in accuracies.items():
        for seed, accuracy in enumerate(values):
            records.append(
                {
                    "experiment": "digits",
                    "method": method,
                    "value": value,
                    "seed": seed,
                    "best_val_accuracy_percent": accuracy,
                    "ece": accuracy / 1000,
                    "nll": 0.1,
                    "brier": 0.2,
                    "confidence": 0.9,
                }
            )
    return pd.DataFrame.from_records(records)


def test_the_student_interval_matches_the_t_table():
    mean, lower, upper = analysis.student_interval([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) x sd 1 / sqrt(3)
    assert (
        mean == 2.0
        and lower == pytest.approx(2 - half, abs=1e-5)
        and upper == pytest.approx(2 + half, abs=1e-5)
    )
    assert all(math.isnan(bound) for bound in analysis.student_interval([0.5])[1:])


def test_paired_differences_pair_by_seed_and_give_a_verdict():
    runs = _runs(
        {
            ("gamma", 1.0): [90.0, 92.0, 94.0],
            ("gamma", 0.9): [91.0, 93.1, 94.9],  # +1.0, +1.1, +0.9: a gain that holds
            ("alpha", 0.1): [95.0, 87.0, 94.0],  # +5, -5, 0: noise
            ("lspp", 0.1): [91.0, 93.0, 95.0],  # +1 on every seed: no spread
        }
    )
    paired = analysis.paired_differences(runs, STUDY).set_index("method")
    assert list(paired.index) == ["gamma", "alpha", "lspp"]
    assert paired.loc["gamma", "mean_difference_points"] == pytest.approx(1.0)
    assert (
        paired.loc["gamma", "verdict"] == "gain holds"
        and paired.loc["gamma", "ci95_lower_points"] > 0
    )
    assert paired.loc["alpha", "verdict"] == "within seed noise"
    assert paired.loc["lspp", "verdict"].startswith("same difference on every seed")
    # unpaired seeds are left out: without gamma = 1 on seed 2, two pairs remain
    fewer = runs[
        ~((runs["method"] == "gamma") & (runs["value"] == 1.0) & (runs["seed"] == 2))
    ]
    assert set(analysis.paired_differences(fewer, STUDY)["seeds"]) == {2}


def test_the_methods_table_takes_each_methods_best_value():
    runs = _runs(
        {
            ("gamma", 1.0): [90.0, 92.0],
            ("gamma", 0.9): [93.0, 93.0],
            ("alpha", 0.1): [91.0, 91.0],
            ("lspp", 0.1): [94.0, 96.0],
        }
    )
    cells = analysis.calibration_cells(runs)
    row = analysis.methods_table(cells, STUDY).iloc[0]
    assert (
        row["one_hot_accuracy_percent"] == 91.0
        and row["gamma_value"] == 0.9
        and row["gamma_accuracy_percent"] == 93.0
    )
    assert row["lspp_accuracy_percent"] == 95.0 and row[
        "lspp_accuracy_percent_std"
    ] == pytest.approx(math.sqrt(2))
    assert row["alpha_ece"] == pytest.approx(0.091)
