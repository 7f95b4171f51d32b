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

from smoothbench.results import (
    collection,
    front_page,
    provenance,
    run_plots,
    summary_plots,
)
from smoothbench.study import load_study
from smoothbench.tools import status

COMMIT = "0123abc0123abc0123abc0123abc0123abc0123"
OTHER_COMMIT = "4567def4567def4567def4567def4567def4567"
SETTING = (
    "float32 (JAX, XLA on, deterministic off, TF32 off) on CPU, Keras 3.9.0, "
    "JAX 0.4.30, jaxlib 0.4.30"
)
CLEAN_LINE = f"Computed under {SETTING}, code 0123abc0123a: all 9 runs."


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


def _attempt(precision="float32", backend="jax", commit=COMMIT, dirty=False, **more):
    """An attempt as this version records it (smoothbench.train.session.attempt_record)."""
    return {
        "started_at_epoch": 0,
        "backend": backend,
        "precision": precision,
        "jit_compile": True,
        "deterministic": False,
        "tf32": False,
        "device": "CPU",
        "xla_flags": "",
        "code_version": "0.1.0",
        "code_commit": commit,
        "code_dirty": dirty,
        "versions": {"keras": "3.9.0", "jax": "0.4.30", "jaxlib": "0.4.30"},
    } | more


def _old_attempt(precision="float32", backend="jax"):
    """An attempt as the versions before per-attempt provenance recorded it."""
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
                attempts=[_attempt(precision, commit=commit, dirty=dirty)],
            )
        )
    return study, files


def _tables(tmp_path, differing=None):
    study, files = _write_study(tmp_path, differing)
    frames = make_tables(study, files, tmp_path / "tables")
    runs = collection.read_runs_table(tmp_path / collection.RUNS_FILE)
    return study, runs, frames


def _front_page(tmp_path, study, runs):
    return front_page.write_front_page(study, runs, None, tmp_path / "front_page.html")


def _status_text(study):
    statuses = status.study_status(study, now=0.0)
    return status.render(study, statuses, 0.0)


def test_a_study_mixing_commits_and_precisions_says_so_everywhere(tmp_path):
    study, runs, _ = _tables(tmp_path, MIXED)
    tables = tmp_path / "tables"
    main = f"{SETTING}, code 0123abc0123a"
    half = SETTING.replace("float32", "mixed_float16", 1)
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
    assert list(pd.read_csv(tables / "table2.csv").columns) == collection.TABLE_COLUMNS
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

    # smoothbench-status lists them too, at its top: above the table of runs, which a
    # long study scrolls out of sight (the warning below it went unseen)
    shown = _status_text(study)
    assert "WARNING: Warning: mixed provenance" not in shown
    warning = shown.index("WARNING: mixed provenance, 2 code commits")
    assert shown.index("planned runs, at") < warning < shown.index("experiment ")
    assert warning < shown.index("val_acc: the best epoch's") < shown.index("\nruns: ")
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
    assert f"All 9 runs: {SETTING}, code 0123abc0123a." in page
    shown = _status_text(study)
    assert "WARNING" not in shown
    assert f"provenance: All 9 runs: {SETTING}" in shown


def test_one_setting_from_a_dirty_tree_is_a_mix_too(tmp_path):
    dirty = {
        (gamma, seed): (COMMIT, True, "float32")
        for gamma in (1.0, 0.9, 0.8)
        for seed in (0, 1, 2)
    }
    study, runs, _ = _tables(tmp_path, dirty)
    groups = provenance.provenance_groups(runs)
    assert len(groups) == 1 and provenance.is_mixed(groups)
    line = provenance.provenance_line(runs)
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
                **provenance.run_provenance(
                    {
                        "attempts": [
                            _old_attempt("float32", "tensorflow"),
                            _old_attempt("mixed_bfloat16", "tensorflow"),
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
                **provenance.run_provenance({}),
            },
        ]
    )
    assert list(runs["precision"]) == ["float32+mixed_bfloat16", ""]
    assert list(runs["mixed_attempts"]) == ["precision", ""]
    line = provenance.provenance_line(runs)
    assert (
        "float32+mixed_bfloat16 (TensorFlow, XLA on, deterministic off, TF32 not "
        "recorded), code commit not recorded; attempts differ in precision"
    ) in line
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

    monkeypatch.setattr(summary_plots, "save_figure", keep)
    monkeypatch.setattr(run_plots, "save_figure", keep)
    summary_plots.write_summary_plots(study, runs, tmp_path / "plots")
    run_plots.write_reliability(study, "digits", runs, tmp_path / "reliability")
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
    run_plots.write_training_curves(study, "digits", runs, tmp_path / "curves")
    for name in ("accuracy_vs_gamma", "gain_over_baseline", "reliability", "curves"):
        text = " ".join(footnotes[name].split())  # wrapped to the figure's width
        assert "Mixed provenance" in text and "mixed_float16" in text, name
    clean = tmp_path / "clean"
    study, runs, _ = _tables(clean)
    summary_plots.write_summary_plots(study, runs, clean / "plots")
    assert " ".join(footnotes["accuracy_vs_gamma"].split()) == CLEAN_LINE


BASE_RUN = {
    "experiment": "digits",
    "method": "gamma",
    "value": 1.0,
    **provenance.run_provenance({"attempts": [_attempt()]}),
}


@pytest.mark.parametrize(
    "column",
    [
        *provenance.COMPUTE_COLUMNS,
        *provenance.NUMERICS_COLUMNS,
        "code_version",
    ],
)
def test_each_thing_that_changes_a_number_alone_makes_a_mix(column):
    runs = pd.DataFrame(
        [BASE_RUN | {"seed": 0}, BASE_RUN | {"seed": 1, column: "other"}]
    )
    groups = provenance.provenance_groups(runs)
    assert provenance.is_mixed(groups)
    assert list(provenance.differing(groups)) == [column]
    assert [row[3] for row in provenance.concerned_runs(groups)] == ["1"]
    assert "(most runs: " in provenance.concerned_runs(groups)[0][4]


def _run(seed, *attempts, **payload):
    return {
        "experiment": "digits",
        "method": "gamma",
        "value": 1.0,
        "seed": seed,
        **provenance.run_provenance({"attempts": list(attempts)} | payload),
    }


def test_a_cpu_run_and_a_gpu_run_at_float32_and_a_tensorflow_upgrade_are_a_mix():
    cpu = _attempt(
        backend="tensorflow", versions={"keras": "3.9.0", "tensorflow": "2.18.0"}
    )
    gpu = cpu | {
        "device": "NVIDIA A100-SXM4-40GB",
        "versions": cpu["versions"] | {"cuda": "12.5.1", "cudnn": "9"},
    }
    upgraded = cpu | {"versions": {"keras": "3.9.0", "tensorflow": "2.19.0"}}
    runs = pd.DataFrame([_run(0, cpu), _run(1, cpu), _run(2, gpu), _run(3, upgraded)])
    groups = provenance.provenance_groups(runs)
    assert [group.count for group in groups] == [2, 1, 1]
    assert set(provenance.differing(groups)) == {
        "device",
        "tensorflow_version",
        "cuda_version",
        "cudnn_version",
    }
    title, _, rows, _ = provenance.warning_section(runs)
    assert "2 devices (CPU, NVIDIA A100-SXM4-40GB)" in title
    assert "2 TensorFlow versions (2.18.0, 2.19.0)" in title
    why = {row[3]: row[4] for row in rows}
    assert "device NVIDIA A100-SXM4-40GB (most runs: CPU)" in why["2"]
    assert "CUDA version 12.5.1 (most runs: not recorded)" in why["2"]
    assert why["3"] == "TensorFlow version 2.19.0 (most runs: 2.18.0)"
    line = provenance.provenance_line(runs)
    assert (
        "on NVIDIA A100-SXM4-40GB, Keras 3.9.0, TensorFlow 2.18.0, CUDA 12.5.1" in line
    )


def test_a_run_trained_under_one_commit_and_finished_under_another_is_mixed():
    """Its attempts record their commits: both are reported, the one group of the study
    is a mix, and run_commits (what smoothbench-retire --other-commit reads) has both."""
    began = _attempt(commit=COMMIT)
    finished = _attempt(commit=OTHER_COMMIT) | {"started_at_epoch": 150}
    payload = {
        "attempts": [began, finished],
        # what the attempt that finished it records for the whole run
        "software": {"smoothbench": {"commit": OTHER_COMMIT, "dirty": False}},
    }
    run = _run(0, **payload)
    assert run["code_commit"] == f"{COMMIT}+{OTHER_COMMIT}"
    assert run["mixed_attempts"] == "code_commit"
    assert provenance.run_commits(payload) == {COMMIT, OTHER_COMMIT}
    assert provenance.run_commits({"attempts": [began]}) == {COMMIT}
    runs = pd.DataFrame([run, _run(1, **payload)])
    groups = provenance.provenance_groups(runs)
    assert len(groups) == 1 and provenance.is_mixed(groups)
    line = provenance.provenance_line(runs)
    assert "code 0123abc0123a+4567def4567d; attempts differ in code commit" in line
    assert line.endswith("Not one setting from first epoch to last: see provenance.md.")
    title, _, rows, notes = provenance.warning_section(runs)
    assert "2 runs whose attempts differ (code commit)" in title
    assert [row[3] for row in rows] == ["0", "1"]
    assert rows[0][4] == "its attempts differ in code commit"
    assert "resumed under other code or compute than it began with" in notes[0]
    # a file of before per-attempt provenance: the run's one recorded commit
    old = {
        "attempts": [_old_attempt(), _old_attempt()],
        "software": {"smoothbench": {"commit": COMMIT, "dirty": False}},
    }
    assert provenance.run_commits(old) == {COMMIT}
    assert provenance.run_provenance(old)["mixed_attempts"] == ""
    # an attempt of before it in a run resumed after it: its commit is unknown
    straddling = old | {"attempts": [_old_attempt(), _attempt(commit=OTHER_COMMIT)]}
    assert provenance.run_commits(straddling) == {"unknown", OTHER_COMMIT}
    read = provenance.run_provenance(straddling)
    assert read["code_commit"] == f"unknown+{OTHER_COMMIT}"
    assert read["tf32"] == "True+False"  # the old attempt: TF32 left on
    assert "code_commit" in read["mixed_attempts"]


def test_an_older_files_provenance_reads_its_one_record():
    payload = {
        "attempts": [_old_attempt(backend="tensorflow")],
        "device": "NVIDIA V100",
        "software": {
            "keras": "3.5.0",
            "tensorflow": "2.17.0",
            "smoothbench": {"commit": COMMIT, "dirty": False, "version": "0.1.0"},
        },
    }
    read = provenance.run_provenance(payload)
    assert read["device"] == "NVIDIA V100"
    assert (read["keras_version"], read["tensorflow_version"]) == ("3.5.0", "2.17.0")
    assert (read["code_commit"], read["code_version"]) == (COMMIT, "0.1.0")
    assert read["tf32"] == "" and read["cuda_version"] == ""  # not recorded
    assert read["mixed_attempts"] == ""


def test_runs_csv_and_the_front_page_report_a_run_whose_attempts_differ(tmp_path):
    study, files = _study(tmp_path), []
    for run in study.runs():
        attempts = [_attempt()]
        if (run.value, run.seed) == (0.9, 1):  # resumed under another commit, on a GPU
            attempts.append(_attempt(commit=OTHER_COMMIT, device="NVIDIA A100"))
        files.append(
            write_metrics(
                tmp_path,
                "digits",
                run.value,
                run.seed,
                0.9,
                study,
                software={"smoothbench": {"commit": OTHER_COMMIT, "dirty": False}},
                attempts=attempts,
            )
        )
    make_tables(study, files, tmp_path / "tables")
    runs = collection.read_runs_table(tmp_path / collection.RUNS_FILE)
    plain = pd.read_csv(
        tmp_path / collection.RUNS_FILE, dtype=str, keep_default_na=False
    )
    for column in [
        *provenance.PROVENANCE_COLUMNS,
        provenance.MIXED_COLUMN,
    ]:
        assert column in plain, column
    resumed = plain[(plain["value"] == "0.9") & (plain["seed"] == "1")].iloc[0]
    assert resumed["code_commit"] == f"{COMMIT}+{OTHER_COMMIT}"
    assert resumed["device"] == "CPU+NVIDIA A100"
    assert resumed["mixed_attempts"] == "code_commit, device"
    assert (resumed["tf32"], resumed["keras_version"]) == ("False", "3.9.0")
    others = plain.drop(resumed.name)
    assert set(others["mixed_attempts"]) == {""} and set(others["code_commit"]) == {
        COMMIT
    }
    page = html.unescape(_front_page(tmp_path, study, runs))
    assert "Warning: mixed provenance" in page
    assert "1 run whose attempts differ (code commit, device)" in page
    assert "its attempts differ in code commit, device" in page
