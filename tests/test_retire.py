"""Retraining on purpose (smoothbench-retire): chosen runs are moved whole into a dated
folder of retired runs, never deleted, and the workflow trains them again; the rest is
untouched. And one checkout per runs folder (smoothbench.pipeline.ownership)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEMO_RESULTS, REPOSITORY, copy_of_demo, demo_command

from smoothbench.pipeline import ownership
from smoothbench.study import load_study
from smoothbench.tools import retire

CONFIG = {
    "data": {"download": False},
    "protocol": {"gammas": [0.9, 1.0]},
    "seeds": [0, 1],
    "experiments": {"digits": {}},
}


def _study(tmp_path) -> object:
    return load_study(CONFIG | {"results_folder": str(tmp_path / "results")})


def _finished(study, run, commit="abc", dirty=False, precisions=("float32",)) -> Path:
    folder = Path(run.folder(study.runs_folder))
    (folder / ".finished").mkdir(parents=True)
    (folder / "history.csv").write_text("epoch\n0\n")
    metrics = {
        "software": {"smoothbench": {"commit": commit, "dirty": dirty}},
        "attempts": [{"precision": precision} for precision in precisions],
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_runs_are_chosen_by_name_commit_and_precision(tmp_path):
    study = _study(tmp_path)
    runs = {(run.value_text, run.seed): run for run in study.runs()}
    _finished(study, runs["0.9", 0], commit="old")
    _finished(study, runs["0.9", 1], commit="head", dirty=True)
    _finished(
        study, runs["1.0", 0], commit="head", precisions=("float32", "mixed_bfloat16")
    )
    _finished(study, runs["1.0", 1], commit="head")

    def chosen(**filters):
        return {
            (run.value_text, run.seed) for run, _, _ in retire.choose(study, **filters)
        }

    assert chosen(values=["0.9"]) == {("0.9", 0), ("0.9", 1)}
    assert chosen(seeds=[1]) == {("0.9", 1), ("1.0", 1)}
    assert chosen(values=["0.9"], seeds=[0]) == {("0.9", 0)}
    assert chosen(other_commit="head") == {("0.9", 0), ("0.9", 1)}  # old, and dirty
    assert chosen(other_precision="float32") == {("1.0", 0)}
    why = {
        (run.value_text, run.seed): reason
        for run, _, reason in retire.choose(study, other_commit="head")
    }
    assert "trained by commit old, not head" in why["0.9", 0]
    assert "(dirty tree)" in why["0.9", 1]


def test_retiring_moves_the_runs_whole_and_leaves_the_rest(tmp_path, capsys):
    study = _study(tmp_path)
    runs = {(run.value_text, run.seed): run for run in study.runs()}
    folders = {key: _finished(study, run) for key, run in runs.items()}
    before = {
        key: (folder / "metrics.json").read_text() for key, folder in folders.items()
    }
    config_file = tmp_path / "study.yaml"
    config_file.write_text(
        json.dumps(CONFIG | {"results_folder": str(tmp_path / "results")})
    )
    assert (
        retire.main(["--configfile", str(config_file), "--values", "0.9", "--dry-run"])
        == 0
    )
    assert all(folder.exists() for folder in folders.values())  # dry run: nothing moved
    assert retire.main(["--configfile", str(config_file), "--values", "0.9"]) == 0
    [dated] = (tmp_path / "results" / "retired").iterdir()
    record = json.loads((dated / "retired.json").read_text())
    assert {(run["value"], run["seed"]) for run in record["runs"]} == {
        (0.9, 0),
        (0.9, 1),
    }
    for seed in (0, 1):
        moved = Path(runs["0.9", seed].folder(str(dated / "runs")))
        assert not folders["0.9", seed].exists()
        assert (moved / "metrics.json").read_text() == before["0.9", seed]
        assert (moved / ".finished").is_dir() and (moved / "history.csv").exists()
    for seed in (0, 1):  # the rest untouched
        assert (folders["1.0", seed] / "metrics.json").read_text() == before[
            "1.0", seed
        ]
    with pytest.raises(SystemExit):  # every run of a study takes naming it
        retire.main(["--configfile", str(config_file)])
    assert "choose the runs" in capsys.readouterr().err


def _config_file(tmp_path) -> Path:
    config_file = tmp_path / "study.yaml"
    config_file.write_text(
        json.dumps(CONFIG | {"results_folder": str(tmp_path / "results")})
    )
    return config_file


def _all_finished(study) -> dict:
    return {
        (run.value_text, run.seed): _finished(study, run, commit="head")
        for run in study.runs()
    }


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (
            ["--other-precision", "fp32"],
            "known: float32, mixed_bfloat16, mixed_float16",
        ),
        (["--other-backend", "tf"], "known: tensorflow, jax, torch"),
        (["--methods", "gama"], "the study has gamma"),
        (["--values", "0.90"], "the study has 0.9, 1.0"),
        (["--seeds", "7"], "the study has 0, 1"),
        (["--experiments", "svhn"], "the study has digits"),
    ],
)
def test_an_unknown_filter_value_is_refused_naming_the_known_ones(
    tmp_path, capsys, arguments, named
):
    """A typo once chose every finished run (no run was trained under 'fp32'): now it
    is refused before anything moves, naming the values the filter knows."""
    study = _study(tmp_path)
    folders = _all_finished(study)
    with pytest.raises(SystemExit) as exit_:
        retire.main(["--configfile", str(_config_file(tmp_path)), *arguments])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert f"{arguments[0]} {arguments[1]}: unknown ({named})" in error, error
    assert all(folder.exists() for folder in folders.values())
    assert not (tmp_path / "results" / "retired").exists()


def test_the_known_precisions_and_backends_are_the_packages_own():
    from smoothbench.compute import backends

    known = retire.known_values(load_study(CONFIG))
    assert known["--other-precision"] == list(backends.PRECISIONS)
    assert known["--other-backend"] == list(backends.BACKENDS)


def _training(study, run, updated=None) -> Path:
    """A run whose job is training now (a live status.json), or whose status last
    spoke at ``updated`` (seconds since the epoch)."""
    from smoothbench import run_record

    folder = Path(run.folder(study.runs_folder))
    run_record.write_run_status(folder, "running", epoch=2, host="node7", pid=4242)
    if updated is not None:
        path = run_record.status_path(folder)
        status = json.loads(path.read_text())
        path.write_text(json.dumps(status | {"updated": updated}))
    return folder


def test_a_run_training_now_is_refused_unless_included_on_purpose(tmp_path, capsys):
    study = _study(tmp_path)
    runs = {(run.value_text, run.seed): run for run in study.runs()}
    done = _finished(study, runs["0.9", 0])
    training = _training(study, runs["0.9", 1])
    config_file = str(_config_file(tmp_path))
    for arguments in (
        ["--values", "0.9"],
        ["--seeds", "1"],
        ["--values", "0.9", "--dry-run"],
    ):
        assert retire.main(["--configfile", config_file, *arguments]) == 2
        error = capsys.readouterr().err
        assert error.startswith("smoothbench-retire: error: "), error
        assert "1 chosen run(s) are training now" in error, error
        assert f"{training}: running on node7 (pid 4242)" in error
        assert "--include-training" in error and "nothing moved" in error
        assert done.exists() and training.exists()
        assert not (tmp_path / "results" / "retired").exists()
    assert (
        retire.main(
            ["--configfile", config_file, "--values", "0.9", "--include-training"]
        )
        == 0
    )
    assert not done.exists() and not training.exists()
    [dated] = (tmp_path / "results" / "retired").iterdir()
    record = json.loads((dated / "retired.json").read_text())
    why = {run["seed"]: run["why"] for run in record["runs"]}
    assert "training now (running on node7" in why[1]
    assert "included by --include-training" in why[1]
    assert "training" not in why[0]


def test_a_stalled_run_is_not_training_and_is_retired(tmp_path, capsys):
    """Silent past smoothbench-status's stale limit: a job killed outright."""
    import time

    study = _study(tmp_path)
    run = study.runs()[0]
    stalled = _training(study, run, updated=time.time() - 3600)
    config_file = str(_config_file(tmp_path))
    assert (
        retire.main(
            ["--configfile", config_file, "--values", run.value_text, "--seeds", "0"]
        )
        == 0
    )
    assert not stalled.exists()
    assert (
        "stalled: its status has been silent for 1 h 00 min" in capsys.readouterr().out
    )
    # a longer stale limit takes the same run for training now
    stalled_again = _training(study, run, updated=time.time() - 3600)
    assert (
        retire.main(
            [
                "--configfile",
                config_file,
                "--values",
                run.value_text,
                "--seeds",
                "0",
                "--stale-minutes",
                "120",
            ]
        )
        == 2
    )
    assert "training now" in capsys.readouterr().err and stalled_again.exists()


def test_reasons_name_the_filter_and_value_that_chose_each_run(tmp_path):
    study = _study(tmp_path)
    runs = {(run.value_text, run.seed): run for run in study.runs()}
    _finished(study, runs["0.9", 0], commit="old")
    _finished(study, runs["0.9", 1], commit="head", precisions=("mixed_bfloat16",))
    _finished(study, runs["1.0", 0], commit="head")

    def why(**filters):
        return {
            (run.value_text, run.seed): reason
            for run, _, reason in retire.choose(study, **filters)
        }

    assert why(values=["0.9"], seeds=[0]) == {
        ("0.9", 0): "chosen by --values 0.9; --seeds 0"
    }
    assert why(experiments=["digits"], methods=["gamma"], values=["1.0"]) == {
        ("1.0", 0): "chosen by --experiments digits; --methods gamma; --values 1.0"
    }
    assert why(other_precision="float32") == {
        ("0.9", 1): "chosen by --other-precision float32: trained under mixed_bfloat16"
    }
    assert why(other_backend="jax", values=["1.0"]) == {
        ("1.0", 0): "chosen by --values 1.0; --other-backend jax: trained under an "
        "unrecorded backend"
    }
    every = {
        **why(other_commit="head"),
        **why(other_precision="float32", seeds=[1]),
    }
    assert every == {
        ("0.9", 0): "chosen by --other-commit: trained by commit old, not head",
        ("0.9", 1): (
            "chosen by --seeds 1; --other-precision float32: trained under "
            "mixed_bfloat16"
        ),
    }
    for reasons in (why(other_commit="head"), why(other_precision="float32")):
        assert all("name" not in reason for reason in reasons.values())


def test_a_run_moves_with_all_its_kept_versions(tmp_path, capsys):
    study = _study(tmp_path)
    runs = {(run.value_text, run.seed): run for run in study.runs()}
    kept = _finished(study, runs["0.9", 0])
    for version in ("v1", "v2"):
        (kept / ".versions" / version).mkdir(parents=True)
        (kept / ".versions" / version / "metrics.json").write_text("{}")
    _finished(study, runs["0.9", 1])
    config_file = str(_config_file(tmp_path))
    assert (
        retire.main(["--configfile", config_file, "--values", "0.9", "--dry-run"]) == 0
    )
    out = capsys.readouterr().out
    assert (
        f"{kept}: chosen by --values 0.9; would move the run folder with all its kept versions (2 kept versions)"
        in out
    )
    assert "with all its kept versions (0 kept versions)" in out
    assert retire.main(["--configfile", config_file, "--values", "0.9"]) == 0
    assert (
        "moves the run folder with all its kept versions (2 kept versions)"
        in capsys.readouterr().out
    )
    [dated] = (tmp_path / "results" / "retired").iterdir()
    record = json.loads((dated / "retired.json").read_text())
    assert {run["seed"]: run["kept_versions"] for run in record["runs"]} == {0: 2, 1: 0}
    moved = Path(runs["0.9", 0].folder(str(dated / "runs")))
    assert sorted(path.name for path in (moved / ".versions").iterdir()) == ["v1", "v2"]


def test_two_retirements_within_one_second_keep_their_own_folders(tmp_path):
    import datetime

    study = _study(tmp_path)
    _all_finished(study)
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    first = retire.retire(study, retire.choose(study, seeds=[0]), when)
    second = retire.retire(study, retire.choose(study, seeds=[1]), when)
    assert (first.name, second.name) == ("2025-01-02T030405", "2025-01-02T030405-2")
    for dated, seed in ((first, 0), (second, 1)):
        record = json.loads((dated / "retired.json").read_text())
        assert {run["seed"] for run in record["runs"]} == {seed}
        assert len(list((dated / "runs" / "digits").glob("*/seed~*"))) == 2


def test_a_second_checkout_is_refused_a_runs_folder_and_may_take_it_over(tmp_path):
    runs = tmp_path / "results" / "runs"
    ownership.claim(runs, "/home/one/smoothbench")
    ownership.claim(runs, "/home/one/smoothbench")  # the everyday loop: again, fine
    with pytest.raises(ownership.ResultsOwnerError) as error:
        ownership.claim(runs, "/home/two/smoothbench")
    message = str(error.value)
    assert str(runs.resolve()) in message and "/home/one/smoothbench" in message
    assert f"delete {(runs / ownership.OWNER_FILE).resolve()}" in message
    (runs / ownership.OWNER_FILE).unlink()  # taken over on purpose
    ownership.claim(runs, "/home/two/smoothbench")
    assert ownership.read_owner(runs)["checkout"] == "/home/two/smoothbench"


@pytest.mark.workflow
def test_retired_demo_runs_are_trained_again_and_nothing_else(demo, tmp_path):
    copy = copy_of_demo(demo, tmp_path / "demo")
    runs = copy / DEMO_RESULTS / "runs"
    before = {path: path.read_bytes() for path in runs.rglob("metrics.json")}
    process = subprocess.run(
        [
            str(Path(sys.executable).with_name("smoothbench-retire")),
            "--configfile",
            str(REPOSITORY / "config" / "demo.yaml"),
            "--values",
            "0.8",
            "--methods",
            "gamma",
        ],
        cwd=copy,
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    retired = runs / "digits" / "gamma~0.8"
    assert not retired.exists()  # both seeds moved, and their emptied folder removed
    [dated] = (copy / DEMO_RESULTS / "retired").iterdir()
    old = dated / "runs" / "digits" / "gamma~0.8"
    assert sorted(path.name for path in old.iterdir()) == ["seed~0", "seed~1"]
    process = subprocess.run(
        demo_command(copy, "--cores", "2"), capture_output=True, text=True
    )
    assert process.returncode == 0, process.stdout + process.stderr
    trained = [
        line
        for line in process.stdout.splitlines() + process.stderr.splitlines()
        if "wildcards:" in line and "experiment=digits" in line and "method=" in line
    ]
    assert trained and all("value=0.8" in line for line in trained), trained
    for path, content in before.items():  # the other runs: the very same files
        if "gamma~0.8" not in str(path):
            assert path.read_bytes() == content, path
    for seed in (0, 1):
        new = retired / f"seed~{seed}" / "metrics.json"
        assert new.exists()
        assert (old / f"seed~{seed}" / "metrics.json").exists()  # the old numbers kept


def _claim(arguments) -> str:
    folder, identity = arguments
    try:
        ownership.claim(folder, identity)
    except Exception as error:
        return type(error).__name__
    return "ok"


def test_jobs_that_start_together_claim_the_runs_folder_once(tmp_path):
    """Four jobs of one workstation start at once: every claim of the same checkout
    succeeds, one whole mark is left and nothing else (a staging file removed by
    another job's write failed one claim in 64 before the mark was linked into place)."""
    import multiprocessing

    runs = tmp_path / "runs"
    with multiprocessing.get_context("fork").Pool(8) as pool:
        outcomes = pool.map(_claim, [(runs, "/home/one/smoothbench")] * 64)
    assert outcomes == ["ok"] * 64
    assert [path.name for path in runs.iterdir()] == [ownership.OWNER_FILE]
    assert ownership.read_owner(runs)["checkout"] == "/home/one/smoothbench"


def test_a_run_killed_under_one_commit_and_finished_under_another_is_found(tmp_path):
    """Its attempts record both commits: --other-commit HEAD finds it though the
    finishing attempt (and the run-level record) is HEAD's, and the reason names both."""
    from smoothbench.results.provenance import run_commits, run_provenance

    study = _study(tmp_path)
    runs = {(run.value_text, run.seed): run for run in study.runs()}
    mixed = _finished(study, runs["0.9", 0], commit="head")
    _finished(study, runs["1.0", 0], commit="head")
    metrics = json.loads((mixed / "metrics.json").read_text())
    metrics["attempts"] = [
        {"precision": "float32", "code_commit": "old", "code_dirty": False},
        {"precision": "float32", "code_commit": "head", "code_dirty": False},
    ]
    (mixed / "metrics.json").write_text(json.dumps(metrics))
    assert run_commits(metrics) == {"old", "head"}
    assert "+" in run_provenance(metrics)["code_commit"]  # reported as mixed
    chosen = {
        (run.value_text, run.seed): reason
        for run, _, reason in retire.choose(study, other_commit="head")
    }
    assert set(chosen) == {("0.9", 0)}
    assert "old" in chosen["0.9", 0] and "head" in chosen["0.9", 0]
