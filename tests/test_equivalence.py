"""The equivalence check's arithmetic (smoothbench.tools.equivalence); the check itself trains
a study twice to convergence (docs/speed.md) and is run by hand, not here."""

from __future__ import annotations

import math
import statistics

import pytest
import yaml
from conftest import REPOSITORY
from scipy import stats

from smoothbench.study import load_study
from smoothbench.tools import equivalence


def _accuracies(values):
    return {("digits", 0.9, seed): (value, 0.01) for seed, value in enumerate(values)}


def test_a_candidate_within_the_tolerance_passes_one_outside_fails_and_noise_is_inconclusive(
    tmp_path,
):
    reference = _accuracies([97.0, 97.5, 96.8, 97.2, 97.1])
    close = _accuracies([97.1, 97.4, 96.9, 97.2, 97.0])
    row = equivalence.compare(reference, close, 0.5, "close", {"backend": "jax"})
    assert row["verdict"] == "pass" and row["pairs"] == 5
    assert row["lower_95"] <= row["mean_difference"] <= row["upper_95"]
    assert row["lower_95"] >= -0.5 and row["upper_95"] <= 0.5
    worse = _accuracies([96.0, 96.6, 95.7, 96.3, 96.1])
    row = equivalence.compare(reference, worse, 0.5, "worse", {})
    assert row["verdict"] == "FAIL" and row["mean_difference"] == pytest.approx(-0.98)
    assert row["pairs_needed"] == ""
    # noisy pairs: a mean near 0 is not enough, the interval must fit; the row says how
    # many pairs of the same spread would make it fit
    noisy = _accuracies([98.0, 96.5, 97.8, 96.2, 97.1])
    row = equivalence.compare(reference, noisy, 0.5, "noisy", {})
    assert row["verdict"] == "inconclusive" and abs(row["mean_difference"]) < 0.5
    needed = row["pairs_needed"]
    assert isinstance(needed, int) and needed > 5
    differences = [noisy[key][0] - reference[key][0] for key in sorted(reference)]
    # that many pairs of the same mean and spread fit; one fewer does not
    spread = statistics.stdev(differences)
    room = 0.5 - abs(statistics.mean(differences))
    assert stats.t.ppf(0.975, needed - 1) * spread / math.sqrt(needed) <= room
    assert stats.t.ppf(0.975, needed - 2) * spread / math.sqrt(needed - 1) > room
    table = tmp_path / "table"
    equivalence.write_table([row], table)
    assert (
        f"inconclusive: {needed} pairs would fit"
        in (table / "equivalence.md").read_text()
    )


def test_runs_that_do_not_pair_are_refused():
    with pytest.raises(SystemExit, match="do not pair"):
        equivalence.compare(
            _accuracies([97.0, 97.5]), _accuracies([97.0]), 0.5, "short", {}
        )


def test_each_side_is_the_shipped_study_in_a_folder_of_its_own():
    config = yaml.safe_load((REPOSITORY / "config" / "equivalence.yaml").read_text())
    study = load_study(config)
    assert study.config["equivalence_tolerance"] == 0.5
    assert len(study.seeds) == 7 and tuple(study.experiments["digits"].gammas) == (
        0.9,
        1.0,
    )
    side = equivalence.side_config(config, "reference", equivalence.REFERENCE)
    side_study = load_study(side)
    assert side_study.results_folder == "results/equivalence/reference"
    compute = side_study.compute_settings()
    assert compute.requested() == {
        "backend": "tensorflow",
        "precision": "float32",
        "jit_compile": False,
        "deterministic": True,
    }
    # TensorFlow's own kernels: one reference on every CPU, whatever auto picks for oneDNN
    assert compute.onednn is False
    assert config["compute"] == {"threads_per_job": 1}  # the original is left alone


def test_the_settings_to_check_are_named_blocks_or_candidates(tmp_path):
    config = yaml.safe_load((REPOSITORY / "config" / "equivalence.yaml").read_text())
    with pytest.raises(equivalence.UsageError, match="--compute FILE"):
        equivalence.candidates_to_check(config, False)  # nothing named
    block = tmp_path / "compute.yaml"
    block.write_text(
        yaml.safe_dump({"compute": {"jit_compile": True, "threads_per_job": 2}})
    )
    [(name, keys)] = equivalence.candidates_to_check(config, False, None, [block])
    assert name == str(block)
    assert keys == {
        "backend": "auto",
        "precision": "auto",
        "jit_compile": True,
        "deterministic": "auto",
    }
    empty = tmp_path / "empty.yaml"
    empty.write_text(yaml.safe_dump({"compute": {"threads_per_job": 2}}))
    with pytest.raises(equivalence.UsageError, match="no compute block"):
        equivalence.candidates_to_check(config, False, None, [empty])
    every = equivalence.candidates_to_check(config, True)
    labels = [label for label, _ in every]
    assert labels and equivalence.tune_candidates.REFERENCE.label() not in labels
    [(label, chosen)] = equivalence.candidates_to_check(config, False, labels[-1:])
    assert (label, chosen) == every[-1]
    both = equivalence.candidates_to_check(config, False, ["auto", labels[0]])
    assert [label for label, _ in both] == ["auto", labels[0]]
    with pytest.raises(
        equivalence.UsageError, match="not a candidate on .*; the candidates: "
    ):
        equivalence.candidates_to_check(config, False, ["torch float64"])
