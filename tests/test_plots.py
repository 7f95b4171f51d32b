"""The results stage's figures: the loss floor they draw, files they write, errors."""

from __future__ import annotations

import math
import struct

import numpy as np
import pandas as pd
import pytest
from test_tables import _digits_study, write_metrics

from smoothbench import plots, tables
from smoothbench.losses import smoothed_targets


@pytest.mark.parametrize("num_classes", [2, 10, 100])
@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.6])
def test_the_loss_floor_is_the_entropy_of_the_smoothed_target(gamma, num_classes):
    target = np.asarray(smoothed_targets(np.array([0]), num_classes, gamma))[0].astype(
        np.float64
    )
    entropy = -sum(p * math.log(p) for p in target if p > 0)
    assert plots.target_entropy(gamma, num_classes) == pytest.approx(entropy, rel=1e-6)
    # the cross-entropy of the target with any prediction is at least the floor
    prediction = np.random.default_rng(0).dirichlet(np.ones(num_classes))
    assert -(target * np.log(prediction)).sum() >= plots.target_entropy(
        gamma, num_classes
    )


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _history(epochs, start_loss, gap):
    return [
        {
            "epoch": e,
            "lr": 1e-3,
            "loss": start_loss / (e + 1),
            "accuracy": 0.5 + 0.04 * e,
            "val_loss": start_loss / (e + 1) - gap,
            "val_accuracy": 0.55 + 0.04 * e,
            "seconds": 1.0,
        }
        for e in range(epochs)
    ]


def test_summary_plots_are_written_as_png_and_pdf_and_are_reproducible(tmp_path):
    study = _digits_study()
    files = [
        write_metrics(tmp_path, "digits", gamma, seed, 0.9 + 0.01 * seed + gamma / 100)
        for gamma in (1.0, 0.9, 0.8)
        for seed in (0, 1, 2)
    ]
    written = plots.write_summary_plots(study, files, tmp_path / "plots")
    names = sorted(path.name for path in written)
    assert names == [
        "accuracy_vs_gamma.pdf",
        "accuracy_vs_gamma.png",
        "gain_over_baseline.pdf",
        "gain_over_baseline.png",
    ]
    width, height = _png_size(tmp_path / "plots" / "accuracy_vs_gamma.png")
    assert width > 200 and height > 200
    first = (tmp_path / "plots" / "gain_over_baseline.pdf").read_bytes()
    assert first.startswith(b"%PDF")
    plots.write_summary_plots(study, files, tmp_path / "plots")
    assert (
        tmp_path / "plots" / "gain_over_baseline.pdf"
    ).read_bytes() == first  # no timestamp inside
    assert not list((tmp_path / "plots").glob(".*.tmp"))


def test_training_curves_read_each_runs_history_and_name_a_bad_one(tmp_path):
    study = _digits_study(seeds=(0,))
    files = []
    for gamma in (1.0, 0.9, 0.8):
        path = write_metrics(tmp_path, "digits", gamma, 0, 0.9)
        rows = _history(6, 2.0, gap=0.1)  # validation loss below training loss
        pd.DataFrame(rows).to_csv(path.with_name("history.csv"), index=False)
        files.append(path)
    written = plots.write_training_curves(
        study, "digits", files, tmp_path / "curves" / "digits"
    )
    assert [path.suffix for path in written] == [".png", ".pdf"]
    assert _png_size(written[0])[0] > 600  # three panels side by side

    bad = files[1].with_name("history.csv")
    bad.write_text("epoch,lr,loss\n0,0.001,1.0\n")
    with pytest.raises(
        tables.ResultsError,
        match=f"{bad}: no column accuracy, val_accuracy, val_loss in the history",
    ):
        plots.write_training_curves(
            study, "digits", files, tmp_path / "curves" / "digits"
        )
    bad.unlink()
    with pytest.raises(tables.ResultsError, match=f"{bad}: unreadable history"):
        plots.write_training_curves(
            study, "digits", files, tmp_path / "curves" / "digits"
        )
