"""The results stage's figures: the loss floor they draw, files they write, errors."""

from __future__ import annotations

import json
import math
import re
import struct

import numpy as np
import pandas as pd
import pytest
from test_tables import _digits_study, write_metrics

from smoothbench.results import collection, run_plots, summary_plots
from smoothbench.run_record import ResultsError
from smoothbench.train.losses import smoothed_targets


@pytest.mark.parametrize("num_classes", [2, 10, 100])
@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.6])
def test_the_loss_floor_is_the_entropy_of_the_smoothed_target(gamma, num_classes):
    target = np.asarray(smoothed_targets(np.array([0]), num_classes, gamma))[0].astype(
        np.float64
    )
    entropy = -sum(p * math.log(p) for p in target if p > 0)
    assert run_plots.target_entropy(gamma, num_classes) == pytest.approx(
        entropy, rel=1e-6
    )
    # the cross-entropy of the target with any prediction is at least the floor
    prediction = np.random.default_rng(0).dirichlet(np.ones(num_classes))
    assert -(target * np.log(prediction)).sum() >= run_plots.target_entropy(
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
    runs = collection.collect_runs(study, files)
    written = summary_plots.write_summary_plots(study, runs, tmp_path / "plots")
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
    summary_plots.write_summary_plots(study, runs, tmp_path / "plots")
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
    runs = collection.collect_runs(study, files)
    written = run_plots.write_training_curves(
        study, "digits", runs, tmp_path / "curves" / "digits"
    )
    assert [path.suffix for path in written] == [".png", ".pdf"]
    assert _png_size(written[0])[0] > 600  # three panels side by side

    bad = files[1].with_name("history.csv")
    bad.write_text("epoch,lr,loss\n0,0.001,1.0\n")
    with pytest.raises(
        ResultsError,
        match=f"{bad}: no column accuracy, val_accuracy, val_loss in the history",
    ):
        run_plots.write_training_curves(
            study, "digits", runs, tmp_path / "curves" / "digits"
        )
    bad.unlink()
    with pytest.raises(ResultsError, match=f"{bad}: unreadable history"):
        run_plots.write_training_curves(
            study, "digits", runs, tmp_path / "curves" / "digits"
        )


def test_reliability_diagrams_find_their_runs_in_runs_csv_and_read_their_bins(
    tmp_path,
):
    study = _digits_study(seeds=(0,))
    files = [
        write_metrics(tmp_path, "digits", gamma, 0, accuracy)
        for gamma, accuracy in ((1.0, 0.9), (0.9, 0.95), (0.8, 0.92))
    ]
    runs = collection.collect_runs(study, files)
    stem = tmp_path / "reliability" / "digits"
    written = run_plots.write_reliability(study, "digits", runs, stem)
    assert [path.suffix for path in written] == [".png", ".pdf"]
    # the bins are read as runs.csv's rows are: checked against the schema, named
    payload = json.loads(files[1].read_text())
    payload["calibration"]["best_epoch"]["bins"][1]["count"] = -1
    files[1].write_text(json.dumps(payload))
    with pytest.raises(
        ResultsError,
        match=re.escape(
            f"{files[1]}: 'calibration.best_epoch.bins[1].count' is -1, expected at least 0"
        ),
    ):
        run_plots.write_reliability(study, "digits", runs, stem)


# ---------------------------------------------------------------- issue 17: readable figures


def _runs_frame(values_by_method, seeds=(0, 1), num_classes=10, experiment="digits"):
    """collect_runs-like rows: accuracy 97 + value + 0.2 x seed for every (method, value, seed)."""
    rows = []
    for method, values in values_by_method.items():
        for value in values:
            for seed in seeds:
                rows.append(
                    {
                        "experiment": experiment,
                        "method": method,
                        "value": value,
                        "gamma": value if method == "gamma" else math.nan,
                        "num_classes": num_classes,
                        "seed": seed,
                        "best_val_accuracy_percent": 97 + value + 0.2 * seed,
                    }
                )
    return pd.DataFrame(rows)


DEMO_GAMMAS = (0.6, 0.7, 0.8, 0.9, 1.0)
NO_PAPER = pd.DataFrame(columns=["experiment", "gamma", "mean_percent"])


def _legend_labels(axis):
    return [text.get_text() for text in axis.get_legend().get_texts()]


def _errorbar(axis, label_start):
    """The ErrorbarContainer whose label starts with ``label_start`` (None if absent)."""
    found = [
        container
        for container in axis.containers
        if container.get_label().startswith(label_start)
    ]
    assert len(found) <= 1
    return found[0] if found else None


def test_the_gamma_axis_spans_the_gammas_drawn_with_a_small_margin():
    runs = _runs_frame({"gamma": DEMO_GAMMAS})
    figure = summary_plots.accuracy_versus_gamma_figure(
        runs, NO_PAPER, {"digits": "digits"}
    )
    low, high = figure.axes[0].get_xlim()
    # the demo's gamma 0.6-1.0 fills the panel: no more the fixed 0.05-1.05
    assert 0.55 <= low < 0.6 and 1.0 < high <= 1.05
    # the paper's gammas widen the axis where the paper is shown
    paper = pd.DataFrame(
        {"experiment": "digits", "gamma": [0.2, 0.5], "mean_percent": [90.0, 95.0]}
    )
    figure = summary_plots.accuracy_versus_gamma_figure(
        runs, paper, {"digits": "digits"}
    )
    low, high = figure.axes[0].get_xlim()
    assert 0.1 <= low < 0.2 and 1.0 < high <= 1.1  # a tenth of the span beyond


def test_gamma_axis_limits_keep_a_margin_around_a_single_gamma():
    low, high = summary_plots.gamma_axis_limits([0.9, float("nan")])
    assert low < 0.9 < high and high - low <= 0.1


def test_uniform_alpha_and_lspp_stand_at_their_equivalent_gamma_when_run():
    runs = _runs_frame({"gamma": DEMO_GAMMAS, "alpha": [0.1], "lspp": [0.1]})
    figure = summary_plots.accuracy_versus_gamma_figure(
        runs, NO_PAPER, {"digits": "digits"}
    )
    axis = figure.axes[0]
    labels = _legend_labels(axis)
    assert any(label.startswith("uniform α = 0.1") for label in labels), labels
    assert any(label.startswith("LS++ α = 0.1") for label in labels), labels
    equivalent = 1 - 0.1 + 0.1 / 10  # 0.91 for K = 10
    uniform = _errorbar(axis, "uniform α")
    x, y = uniform.lines[0].get_data()
    assert list(x) == pytest.approx([equivalent])
    assert list(y) == pytest.approx([97.1 + 0.1])  # the mean of the two seeds
    assert uniform.has_yerr
    # LS++ at 1 - alpha, its true class's target mass: 0.9, where a gamma run stands
    # too, so it is nudged aside, to the left, away from uniform alpha's 0.91 on the right
    (lspp_x,) = _errorbar(axis, "LS++ α").lines[0].get_xdata()
    assert 0.9 - 0.02 < lspp_x < 0.9
    assert axis.get_xlim()[0] <= 0.6 and axis.get_xlim()[1] >= equivalent


def test_only_the_methods_run_get_a_marker():
    runs = _runs_frame({"gamma": DEMO_GAMMAS, "alpha": [0.2]})
    axis = summary_plots.accuracy_versus_gamma_figure(
        runs, NO_PAPER, {"digits": "digits"}
    ).axes[0]
    assert _errorbar(axis, "LS++") is None
    assert not any("LS++" in label for label in _legend_labels(axis))
    (x,) = _errorbar(axis, "uniform α = 0.2").lines[0].get_xdata()
    assert x == pytest.approx(1 - 0.2 + 0.2 / 10)  # alone: not nudged
    axis = summary_plots.accuracy_versus_gamma_figure(
        _runs_frame({"gamma": DEMO_GAMMAS}), NO_PAPER, {"digits": "digits"}
    ).axes[0]
    assert [container.get_label()[:4] for container in axis.containers] == ["ours"]


def _write_run(folder, study, method, value, seed, accuracy):
    """A metrics.json of any method, with the settings ``study`` gives the run."""
    return write_metrics(folder, "digits", value, seed, accuracy, study, method=method)


def test_the_summary_plots_draw_every_methods_runs(tmp_path, monkeypatch):
    from smoothbench.study import load_study

    study = load_study(
        {
            "data": {"download": False},
            "protocol": {
                "model": "resnet_v1",
                "depth": 20,
                "epochs": 10,
                "pooling": "global",
                "min_image_size": 0,
            },
            "gamma_grid": {"min_numerator": 8},
            "seeds": [0],
            "methods": {
                "alpha": {"experiments": "all"},
                "lspp": {"experiments": "all"},
            },
            "experiments": {"digits": {}},
        }
    )
    files = [
        _write_run(tmp_path, study, method, value, 0, 0.95)
        for method, value in (("gamma", 1.0), ("gamma", 0.9), ("gamma", 0.8))
    ]
    files += [_write_run(tmp_path, study, "alpha", 0.1, 0, 0.96)]
    files += [_write_run(tmp_path, study, "lspp", 0.1, 0, 0.97)]
    figures = []
    original = summary_plots.accuracy_versus_gamma_figure

    def keep(*arguments):
        figures.append(original(*arguments))
        return figures[-1]

    monkeypatch.setattr(summary_plots, "accuracy_versus_gamma_figure", keep)
    summary_plots.write_summary_plots(
        study, collection.collect_runs(study, files), tmp_path / "plots"
    )
    labels = _legend_labels(figures[0].axes[0])
    assert [label.split(" =")[0].split(",")[0] for label in labels] == [
        "ours",
        "uniform α",
        "LS++ α",
    ]


def _bins(counts, accuracy_offset=0.0):
    edges = np.linspace(0, 1, len(counts) + 1)
    return [
        {
            "lower": float(lower),
            "upper": float(upper),
            "count": count,
            "confidence": (lower + upper) / 2 if count else None,
            "accuracy": min(1.0, (lower + upper) / 2 + accuracy_offset)
            if count
            else None,
        }
        for lower, upper, count in zip(edges[:-1], edges[1:], counts)
    ]


def test_the_share_of_examples_is_drawn_visibly_in_its_own_panel():
    counts = [0, 0, 0, 2, 3, 5, 8, 12, 20, 50]
    curves = [
        ("one-hot (γ = 1)", _bins(counts), 0.01),
        ("best γ = 0.8", _bins(counts[::-1], 0.1), 0.2),
    ]
    figure = run_plots.reliability_figure("digits", curves)
    shares = [
        (axis, container)
        for axis in figure.axes
        for container in axis.containers
        if container.get_label() == "share of examples"
    ]
    assert len(shares) == len(curves)  # one per diagram
    for axis, container in shares:
        heights = [patch.get_height() for patch in container.patches]
        assert sum(heights) == pytest.approx(100)  # percent of the examples
        # its own axis, scaled to the shares (on the 0-1 accuracy axis it was a flat line)
        assert axis.get_ylim()[1] >= max(heights) and axis.get_ylim()[1] <= 100
        for patch in container.patches:
            red, green, blue, alpha = patch.get_facecolor()
            assert alpha >= 0.8 and (
                patch.get_alpha() is None or patch.get_alpha() >= 0.8
            )
            assert min(red, green, blue) < 0.6  # a colour, not white or light grey
    accuracy_axes = [axis for axis in figure.axes if axis.get_ylim() == (0.0, 1.0)]
    assert len(accuracy_axes) == len(curves) and not {
        id(axis) for axis, _ in shares
    } & {id(axis) for axis in accuracy_axes}
    assert figure.axes[len(curves)].get_ylabel() == "examples (%)"


def test_the_c_heatmap_colour_scale_spans_the_off_diagonal_values_only():
    rng = np.random.default_rng(0)
    matrix = rng.uniform(0.10, 0.13, size=(10, 10))
    np.fill_diagonal(matrix, 0.0)
    figure = run_plots.c_matrix_figure(matrix, [str(k) for k in range(10)], "digits C")
    axis = figure.axes[0]
    (image,) = axis.images
    off_diagonal = matrix[~np.eye(10, dtype=bool)]
    assert image.get_clim() == pytest.approx((off_diagonal.min(), off_diagonal.max()))
    assert run_plots.off_diagonal_limits(matrix) == pytest.approx(image.get_clim())
    # the zero diagonal is masked (drawn grey), annotated 0 and named in the title
    mask = np.ma.getmaskarray(image.get_array())
    assert mask.diagonal().all() and not mask[~np.eye(10, dtype=bool)].any()
    texts = {
        (round(text.get_position()[0]), round(text.get_position()[1])): text.get_text()
        for text in axis.texts
    }
    assert texts[(3, 3)] == "0" and texts[(1, 0)] == f"{matrix[0, 1]:.3f}"
    assert "0 by construction" in axis.get_title()


def test_a_c_matrix_with_equal_off_diagonal_values_still_draws(tmp_path):
    matrix = np.full((3, 3), 0.5)
    np.fill_diagonal(matrix, 0.0)
    written = run_plots.plot_c_matrix(
        matrix, ["a", "b", "c"], "uniform C", tmp_path / "c"
    )
    assert [path.suffix for path in written] == [".png", ".pdf"]


def _gain_figure(tmp_path, accuracies: dict[float, tuple[float, ...]]):
    """The gain figure of digits runs with these accuracies per gamma (one per seed), and
    Table 3's frames of the same runs."""
    from smoothbench.results import paper_tables
    from smoothbench.results.paper_numbers import best_versus_baseline, paper_cells

    seeds = len(next(iter(accuracies.values())))
    study = _digits_study(seeds=tuple(range(seeds)))
    files = [
        write_metrics(tmp_path, "digits", gamma, seed, accuracy, study)
        for gamma, values in accuracies.items()
        for seed, accuracy in enumerate(values)
    ]
    runs = collection.collect_runs(study, files)
    frames = paper_tables.table_frames(study, runs)
    figure = summary_plots.gain_over_baseline_figure(
        best_versus_baseline(
            paper_tables.summarize_cells(runs), list(study.experiments)
        ),
        best_versus_baseline(paper_cells()),
        collection.row_labels(study),
        paired=frames["paired_differences"],
    )
    return (
        figure,
        frames,
        paper_tables.table3_rows(frames["table3"], study, frames["paired_differences"]),
    )


def _error_bars(axis) -> list[tuple[float, float]]:
    from matplotlib.container import ErrorbarContainer

    bars = []
    for container in axis.containers:
        if isinstance(container, ErrorbarContainer):
            (segment,) = container.lines[2][0].get_segments()
            bars.append((float(segment[0][1]), float(segment[1][1])))
    return bars


def test_the_gain_plot_carries_table3s_interval_and_mark(tmp_path):
    # gamma 0.9 best on average, but one seed of three below gamma = 1: within noise
    figure, frames, rows = _gain_figure(
        tmp_path / "noise",
        {1.0: (0.95, 0.96, 0.97), 0.9: (0.99, 0.95, 0.98), 0.8: (0.90, 0.90, 0.90)},
    )
    axis = figure.axes[0]
    record = frames["table3"].iloc[0]
    assert rows[0][2] == "0.9†"  # Table 3's cell
    paired = frames["paired_differences"].set_index("value").loc[0.9]
    best = record["best_percent"]
    [(lower, upper)] = _error_bars(axis)
    assert lower == pytest.approx(paired["ci95_lower_points"] / best * 100)
    assert upper == pytest.approx(paired["ci95_upper_points"] / best * 100)
    assert lower < 0 < upper  # the bar's interval contains 0: the mark
    labels = [text.get_text() for text in axis.texts]
    assert "γ 0.9†" in labels
    assert "†: within seed noise" in figure.get_supxlabel().replace("\n", " ")
    # a gain every seed shows: an interval clear of 0 and no mark, as in Table 3
    figure, frames, rows = _gain_figure(
        tmp_path / "holds",
        {1.0: (0.90, 0.91, 0.92), 0.9: (0.95, 0.97, 0.96), 0.8: (0.90, 0.90, 0.90)},
    )
    axis = figure.axes[0]
    assert rows[0][2] == "0.9"
    [(lower, upper)] = _error_bars(axis)
    assert 0 < lower < upper
    assert [text.get_text() for text in axis.texts if "γ" in text.get_text()] == [
        "γ 0.9"
    ]
    # one seed: no interval, no mark
    figure, _, rows = _gain_figure(
        tmp_path / "one", {1.0: (0.90,), 0.9: (0.95,), 0.8: (0.91,)}
    )
    assert _error_bars(figure.axes[0]) == [] and rows[0][2] == "0.9"
