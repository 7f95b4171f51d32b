"""One owner per fact: the run record (path grammar, file names, metrics.json), the
methods' ranges, a run's settings, the protocol's defaults and GPUs per job."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
import yaml
from conftest import REPOSITORY

from smoothbench import methods, run_record
from smoothbench.config import ConfigError, fill_defaults, load_schema
from smoothbench.run_record import ResultsError
from smoothbench.study import RunSettings, load_study, load_study_file
from smoothbench.train import losses

DEMO = REPOSITORY / "config" / "demo.yaml"


def _valid_metrics() -> dict:
    at_epoch = {
        "epoch": 1,
        "accuracy": 0.5,
        "ece": 0.1,
        "nll": 1.2,
        "brier": 0.6,
        "confidence": 0.55,
        "bins": [
            {
                "lower": 0.0,
                "upper": 0.5,
                "count": 0,
                "confidence": None,
                "accuracy": None,
            },
            {
                "lower": 0.5,
                "upper": 1.0,
                "count": 3,
                "confidence": 0.7,
                "accuracy": 0.6,
            },
        ],
    }
    return {
        "experiment": "digits",
        "dataset": "digits",
        "method": "gamma",
        "value": 0.9,
        "seed": 0,
        "num_classes": 10,
        "model": "resnet_v1-20",
        "epochs": 2,
        "best_val_accuracy": 0.5,
        "best_epoch": 1,
        "final_val_accuracy": 0.5,
        "train_seconds": 3.2,
        "epoch_numbering": "0-based (the schedule's epoch)",
        "attempts": [{"started_at_epoch": 0}],
        "settings": {},
        "software": {},
        "prepared_data": {},
        "calibration": {"best_epoch": at_epoch, "final_epoch": at_epoch},
    }


def test_the_path_grammar_round_trips():
    folder = run_record.run_folder("results/runs", "svhn", "alpha", 0.1, 3)
    assert folder == "results/runs/svhn/alpha~0.1/seed~3"
    assert run_record.parse_run_folder(folder) == {
        "runs_root": "results/runs",
        "experiment": "svhn",
        "method": "alpha",
        "value_text": "0.1",
        "seed": "3",
    }
    assert run_record.parse_run_folder("results/runs/svhn/other~0.1/seed~3") is None
    assert (
        run_record.run_folder_pattern("r")
        == "r/{experiment}/{method}~{value}/seed~{seed}"
    )
    assert [run_record.format_value(v) for v in (1, 0.9, 1e-05)] == [
        "1.0",
        "0.9",
        "0.00001",
    ]


def test_a_runs_outputs_end_with_metrics_json():
    assert run_record.output_names("gamma") == ["history.csv", "metrics.json"]
    files = run_record.output_files("f", "lspp")
    assert list(files) == ["history", "c_matrix", "metrics"]
    assert files["c_matrix"] == "f/c_matrix.npy"


def test_the_study_finds_runs_through_the_run_record():
    study = load_study_file(DEMO)
    for run in study.runs():
        assert run.folder("x") == run_record.run_folder(
            "x", run.experiment, run.method, run.value, run.seed
        )
        assert list(run.files("x").values())[-1].endswith("/metrics.json")


def test_the_metrics_schema_takes_a_valid_record_and_names_what_breaks_it(tmp_path):
    metrics = _valid_metrics()
    run_record.write_metrics(tmp_path / "metrics.json", metrics)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    for key, value, named in [
        ("best_val_accuracy", 1.5, "'best_val_accuracy'"),
        ("method", "label_smoothing", "'method'"),
        ("seed", "0", "'seed'"),
    ]:
        broken = copy.deepcopy(metrics) | {key: value}
        with pytest.raises(ResultsError, match=named):
            run_record.write_metrics(tmp_path / "broken.json", broken)
    missing = {key: value for key, value in metrics.items() if key != "attempts"}
    with pytest.raises(ResultsError, match="attempts"):
        run_record.check_metrics(missing)
    assert not (tmp_path / "broken.json").exists()  # nothing written when it breaks


def test_a_metrics_file_is_read_once_against_the_schema_naming_the_file_and_key(
    tmp_path,
):
    path = tmp_path / "metrics.json"
    metrics = _valid_metrics()
    path.write_text(json.dumps(metrics))
    assert run_record.read_metrics(path) == metrics
    at_epoch = "calibration.best_epoch"
    for change, named in [
        ({"seed": "0"}, "'seed' is '0', expected an integer"),
        ({"best_epoch": 1.0}, "'best_epoch' is 1.0, expected an integer"),
        (
            {"best_val_accuracy": math.nan},
            "'best_val_accuracy' is nan, expected a finite number",
        ),
        ({"train_seconds": -1}, "'train_seconds' is -1, expected at least 0"),
        ({"attempts": []}, "'attempts' is [], expected at least 1 item(s)"),
        ({"settings": None}, "'settings' is None, expected an object"),
    ]:
        path.write_text(json.dumps(metrics | change))
        with pytest.raises(ResultsError) as caught:
            run_record.read_metrics(path)
        assert str(caught.value).startswith(f"{path}: {named}"), caught.value
        assert "retrain the run" in str(caught.value)
    # best_epoch and final_epoch share one dict in _valid_metrics: break only the best
    broken = copy.deepcopy(metrics)
    best = copy.deepcopy(metrics["calibration"]["best_epoch"])
    del best["bins"][1]["accuracy"]
    broken["calibration"]["best_epoch"] = best
    path.write_text(json.dumps(broken))
    with pytest.raises(ResultsError, match=f"has no '{at_epoch}.bins\\[1\\].accuracy'"):
        run_record.read_metrics(path)
    # writing records a diverged network's NaN (the run's record exists); reading refuses it
    diverged = copy.deepcopy(metrics)
    diverged["calibration"]["best_epoch"] = metrics["calibration"]["best_epoch"] | {
        "ece": math.nan
    }
    run_record.write_metrics(path, diverged)
    with pytest.raises(
        ResultsError,
        match=re.escape(
            f"{path}: '{at_epoch}.ece' is nan, expected a finite number (a non-finite calibration"
        ),
    ):
        run_record.read_metrics(path)


@pytest.mark.parametrize(
    "gamma, classes, inside",
    [
        (0.1, 10, False),
        (0.2, 10, True),
        (1.0, 10, True),
        (1.01, 10, False),
        (0.5, 2, False),
        (0.6, 2, True),
    ],
)
def test_one_gamma_rule_for_the_config_the_losses_and_the_tables(
    gamma, classes, inside
):
    assert methods.gamma_in_range(gamma, classes) is inside
    assert (gamma in methods.gamma_grid(classes)) is (
        inside and gamma * 10 == round(gamma * 10)
    )
    config = yaml.safe_load(DEMO.read_text())
    config["protocol"]["gammas"] = [gamma]
    config["methods"] = {"gamma": {"experiments": "all"}}
    if classes == 10:
        if inside:
            load_study(config)
        else:
            with pytest.raises(ConfigError, match=r"must lie in \(1/K, 1\]"):
                load_study(config)
    if inside:
        assert math.isfinite(float(losses.smoothed_targets([0], classes, gamma)[0][0]))
    else:
        with pytest.raises(ValueError, match=r"\(1/K, 1\]"):
            losses.smoothed_targets([0], classes, gamma)


def test_run_settings_are_frozen_and_round_trip_as_the_jobs_params():
    study = load_study_file(DEMO)
    params = study.train_settings("digits", "lspp", "0.1", 1)
    settings = RunSettings.from_dict(params)
    assert settings.as_dict() == params
    assert json.dumps(settings.as_dict(), sort_keys=True) == json.dumps(
        params, sort_keys=True
    )
    assert (settings.model_name, settings.learning_rate) == ("resnet_v1-20", 1e-3)
    with pytest.raises(AttributeError):
        settings.epochs = 3
    with pytest.raises(ConfigError, match="unknown.*'learning_rate'"):
        RunSettings.from_dict(params | {"learning_rate": 0.1})


def _restated(config: dict, defaults: dict, path: str = "") -> list[str]:
    found = []
    for key, value in config.items():
        inner = f"{path}.{key}" if path else key
        if key not in defaults:
            continue
        if (
            isinstance(value, dict)
            and isinstance(defaults[key], dict)
            and defaults[key]
        ):
            found += _restated(value, defaults[key], inner)
        elif value == defaults[key]:
            found.append(inner)
    return found


@pytest.mark.parametrize("config_file", ["config.yaml", "config/demo.yaml"])
def test_a_shipped_config_restates_no_default_of_the_schema(config_file):
    """The schema owns the paper's protocol and every default; a config overrides."""
    defaults = fill_defaults({}, load_schema())
    config = yaml.safe_load((REPOSITORY / config_file).read_text())
    assert _restated(config, defaults) == []


def test_no_profile_sets_the_gpus_of_a_job():
    """GPUs per training job are config key compute.gpus_per_job only; a profile that set
    the `gpu` resource of a rule would silently override it."""
    for profile in (REPOSITORY / "profiles").glob("*/config.yaml"):
        settings = yaml.safe_load(profile.read_text()) or {}
        for rule, resources in (settings.get("set-resources") or {}).items():
            assert "gpu" not in (resources or {}), (profile, rule)
        assert "gpu" not in (settings.get("default-resources") or {}), profile
    slurm = load_study_file(REPOSITORY / "config.yaml")
    assert {slurm.train_resources(name)["gpu"] for name in slurm.experiments} == {1}
