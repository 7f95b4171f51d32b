"""Provenance in every result: the tables, the figures, the front page and
smoothbench-status say under what code and compute the runs were made, and a study
whose runs mix commits, a dirty tree or compute settings is warned of at the top,
naming the runs concerned."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest
from test_tables import make_tables, write_metrics

from smoothbench import (
    experiment_plots,
    front_page,
    plots,
    provenance_summary,
    runs_table,
    status,
)
from smoothbench.study import load_study

COMMIT = "0123abc0123abc0123abc0123abc0123abc0123"
OTHER_COMMIT = "4567def4567def4567def4567def4567def4567"
CLEAN_LINE = (
    "Computed under float32 (JAX, XLA on, deterministic off), code 0123abc0123a: "
    "all 9 runs."
)


def _study(folder):
    return load_study(
        {
            "results_folder": str(folder),
            "data": {"download": False},
            "protocol": {
                "model": "resnet_v1",
                "depth": 20,
                "epochs": 10,
                "pooling": "global",
                "min_image_size": 0,
            },
            "gamma_grid": {"min_numerator": 8},
            "seeds": [0, 1, 2],
            "experiments": {"digits": {}},
        }
    )


def _attempt(precision="float32", backend="jax"):
    return {
        "started_at_epoch": 0,
        "backend": backend,
        "precision": precision,
        "jit_compile": True,
        "deterministic": False,
    }


# (gamma, seed) -> (commit, dirty, precision) of the runs that differ from the rest
MIXED = {
    (0.9, 2): (OTHER_COMMIT, False, "mixed_float16"),
    (0.8, 1): (COMMIT, False, "mixed_float16"),
    (1.0, 0): (OTHER_COMMIT, False, "float32"),
}


def _write_study(folder, differing=None):
    """Every run of :func:`_study` (gammas 1.0, 0.9, 0.8 x seeds 0-2) as a finished
    metrics.json under ``folder``'s runs; ``differing`` changes some runs' commit,
    dirty flag and precision."""
    study, files = _study(folder), []
    for run in study.runs():
        commit, dirty, precision = (differing or {}).get(
            (run.value, run.seed), (COMMIT, False, "float32")
        )
        files.append(
            write_metrics(
                folder,
                "digits",
                run.value,
                run.seed,
                0.9 + run.value / 100 + run.seed / 1000,
                study,
                software={"smoothbench": {"commit": commit, "dirty": dirty}},
                attempts=[_attempt(precision)],
            )
        )
    return study, files


def _tables(tmp_path, differing=None):
    study, files = _write_study(tmp_path, differing)
    frames = make_tables(study, files, tmp_path / "tables")
    runs = runs_table.read_runs_table(tmp_path / runs_table.RUNS_FILE)
    return study, runs, frames


def _front_page(tmp_path, study, runs):
    return front_page.write_front_page(study, runs, None, tmp_path / "front_page.html")


def _status_text(study):
    statuses = status.study_status(study, now=0.0)
    return status.render(study, statuses, 0.0)


def test_a_study_mixing_commits_and_precisions_says_so_everywhere(tmp_path):
    study, runs, _ = _tables(tmp_path, MIXED)
    tables = tmp_path / "tables"
    main = "float32 (JAX, XLA on, deterministic off), code 0123abc0123a"
    half = "mixed_float16 (JAX, XLA on, deterministic off)"
    # every rendered table states each setting with its run count
    for name in ("table2", "table3", "comparison", "methods", "calibration"):
        for suffix in ("md", "html"):
            text = html.unescape((tables / f"{name}.{suffix}").read_text())
            assert "Mixed provenance (see provenance.md)" in text, (name, suffix)
            assert f"{main}: 6 runs" in text, (name, suffix)
            assert f"{half}, code 4567def4567d: 1 run" in text, (name, suffix)
            assert f"{half}, code 0123abc0123a: 1 run" in text, (name, suffix)
    for name in ("table2", "table3"):
        assert "Mixed provenance" in (tables / f"{name}.tex").read_text()
    # the csv tables keep their columns
    assert list(pd.read_csv(tables / "table2.csv").columns) == runs_table.TABLE_COLUMNS
    groups = pd.read_csv(tables / "provenance.csv")
    assert list(groups["runs"]) == [6, 1, 1, 1] and set(groups["mixed"]) == {True}
    assert set(groups["precision"]) == {"float32", "mixed_float16"}

    # the front page warns at its top, naming the mix and every run concerned
    page = _front_page(tmp_path, study, runs)
    assert '<div class="warning" role="alert">' in page
    assert page.index("Warning: mixed provenance") < page.index("Table 3: this study")
    text = html.unescape(page)
    assert "2 code commits (0123abc0123a, 4567def4567d)" in text
    assert "2 precisions (float32, mixed_float16)" in text
    concerned = re.findall(
        r"<tr><td>digits</td><td>gamma</td><td>([\d.]+)</td><td>(\d)</td><td>([^<]*)</td></tr>",
        text,
    )
    assert sorted((value, seed) for value, seed, _ in concerned) == [
        ("0.8", "1"),
        ("0.9", "2"),
        ("1.0", "0"),
    ]
    why = {(value, seed): reason for value, seed, reason in concerned}
    assert why["0.8", "1"] == "precision mixed_float16 (most runs: float32)"
    assert why["1.0", "0"] == "code commit 4567def4567d (most runs: 0123abc0123a)"
    assert "precision mixed_float16" in why["0.9", "2"]
    assert "code commit 4567def4567d" in why["0.9", "2"]

    # smoothbench-status lists them too, after the runs' states
    shown = _status_text(study)
    assert "WARNING: Warning: mixed provenance" not in shown
    warning = shown.index("WARNING: mixed provenance, 2 code commits")
    assert shown.index("val_acc: the best epoch's") < warning < shown.index("runs: ")
    assert "digits gamma~0.8 seed 1: precision mixed_float16 (most runs: float32)" in (
        shown
    )
    assert "digits gamma~0.9 seed 2: code commit 4567def4567d" in shown
    assert "digits gamma~1.0 seed 0: code commit 4567def4567d" in shown
    assert "gamma~0.9 seed 1:" not in shown  # a run like most is not listed


def test_a_clean_study_states_its_one_commit_and_setting_and_warns_of_nothing(
    tmp_path,
):
    study, runs, _ = _tables(tmp_path)
    tables = tmp_path / "tables"
    for name in ("table2", "table3", "methods", "calibration", "paired_differences"):
        for suffix in ("md", "html"):
            text = html.unescape((tables / f"{name}.{suffix}").read_text())
            assert CLEAN_LINE in text and "Mixed" not in text, (name, suffix)
    assert CLEAN_LINE.replace("_", r"\_") in (tables / "table2.tex").read_text()
    # Table 1 has no run here (every gamma > 0.5): no line rather than a wrong one
    assert "Computed under" not in (tables / "table1.md").read_text()
    groups = pd.read_csv(tables / "provenance.csv")
    assert list(groups["runs"]) == [9] and list(groups["mixed"]) == [False]
    page = html.unescape(_front_page(tmp_path, study, runs))
    assert "Warning" not in page and 'role="alert"' not in page
    assert (
        "All 9 runs: float32 (JAX, XLA on, deterministic off), code 0123abc0123a."
        in page
    )
    shown = _status_text(study)
    assert "WARNING" not in shown
    assert "provenance: All 9 runs: float32 (JAX, XLA on, deterministic off)" in shown


def test_one_setting_from_a_dirty_tree_is_a_mix_too(tmp_path):
    dirty = {
        (gamma, seed): (COMMIT, True, "float32")
        for gamma in (1.0, 0.9, 0.8)
        for seed in (0, 1, 2)
    }
    study, runs, _ = _tables(tmp_path, dirty)
    groups = provenance_summary.provenance_groups(runs)
    assert len(groups) == 1 and provenance_summary.is_mixed(groups)
    line = provenance_summary.provenance_line(runs)
    assert "with uncommitted changes (dirty tree): all 9 runs" in line
    assert line.endswith("Not one commit's code: see provenance.md.")
    page = html.unescape(_front_page(tmp_path, study, runs))
    assert "Warning: mixed provenance, 9 runs trained from a dirty tree" in page
    assert page.count("uncommitted changes (dirty tree)</td>") == 9


def test_runs_resumed_under_another_setting_and_unrecorded_provenance():
    runs = pd.DataFrame(
        [
            {
                "experiment": "digits",
                "method": "gamma",
                "value": 0.9,
                "seed": 0,
                **provenance_summary.run_provenance(
                    {
                        "attempts": [
                            _attempt("float32", "tensorflow"),
                            _attempt("mixed_bfloat16", "tensorflow"),
                        ],
                        "software": {"smoothbench": "not an object"},
                    }
                ),
            },
            {
                "experiment": "digits",
                "method": "gamma",
                "value": 1.0,
                "seed": 0,
                **provenance_summary.run_provenance({}),
            },
        ]
    )
    assert list(runs["precision"]) == ["float32+mixed_bfloat16", ""]
    line = provenance_summary.provenance_line(runs)
    assert "float32+mixed_bfloat16 (TensorFlow, XLA on, deterministic off)" in line
    assert (
        "precision not recorded (compute not recorded), code commit not recorded"
        in (line)
    )


def test_the_figures_state_their_runs_provenance(tmp_path, monkeypatch):
    study, runs, _ = _tables(tmp_path, MIXED)
    footnotes = {}

    def keep(figure, stem):
        footnotes[stem.name] = figure.get_supxlabel()
        return []

    monkeypatch.setattr(plots, "save_figure", keep)
    monkeypatch.setattr(experiment_plots, "save_figure", keep)
    plots.write_summary_plots(study, runs, tmp_path / "plots")
    experiment_plots.write_reliability(study, "digits", runs, tmp_path / "reliability")
    for path in runs["metrics_file"]:
        history = [
            {
                "epoch": e,
                "loss": 1.0,
                "accuracy": 0.5,
                "val_loss": 1.0,
                "val_accuracy": 0.5,
            }
            for e in range(3)
        ]
        pd.DataFrame(history).to_csv(Path(path).with_name("history.csv"), index=False)
    experiment_plots.write_training_curves(study, "digits", runs, tmp_path / "curves")
    for name in ("accuracy_vs_gamma", "gain_over_baseline", "reliability", "curves"):
        text = " ".join(footnotes[name].split())  # wrapped to the figure's width
        assert "Mixed provenance" in text and "mixed_float16" in text, name
    clean = tmp_path / "clean"
    study, runs, _ = _tables(clean)
    plots.write_summary_plots(study, runs, clean / "plots")
    assert " ".join(footnotes["accuracy_vs_gamma"].split()) == CLEAN_LINE


@pytest.mark.parametrize("column", provenance_summary.COMPUTE_COLUMNS)
def test_each_compute_setting_alone_makes_a_mix(column):
    base = {
        "experiment": "digits",
        "method": "gamma",
        "value": 1.0,
        "code_commit": COMMIT,
        "code_dirty": "False",
        "backend": "jax",
        "precision": "float32",
        "jit_compile": "True",
        "deterministic": "False",
    }
    runs = pd.DataFrame([base | {"seed": 0}, base | {"seed": 1, column: "other"}])
    groups = provenance_summary.provenance_groups(runs)
    assert provenance_summary.is_mixed(groups)
    assert list(provenance_summary.differing(groups)) == [column]
    assert [row[3] for row in provenance_summary.concerned_runs(groups)] == ["1"]
