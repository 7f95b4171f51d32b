"""Measured compute choices (smoothbench.tuning): the candidates a config leaves open,
where a measurement is kept and when it is reused, and one real measurement."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPOSITORY

from smoothbench import tuning
from smoothbench.cost import SPLIT_SIZES
from smoothbench.study import load_study
from smoothbench.tuning import REFERENCE, Choice

CPU = {
    "name": "Test CPU abc, 2 threads",
    "gpus": [],
    "cpu": {"model": "Test CPU", "features": ["avx2", "avx512f"]},
    "threads": 2,
}
BF16_CPU = CPU | {"cpu": {"model": "Test CPU", "features": ["avx512_bf16"]}}
GPU = CPU | {"name": "1x NVIDIA H200", "gpus": ["NVIDIA H200"]}
AUTO = {
    "backend": "auto",
    "precision": "auto",
    "jit_compile": "auto",
    "deterministic": "auto",
    "threads_per_job": 2,
}


@pytest.fixture
def both_backends(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(tuning, "installed_backends", lambda: ["tensorflow", "jax"])


def test_every_candidate_on_a_cpu_without_bfloat16_units_reference_first(
    both_backends,
):
    assert tuning.candidates(AUTO, CPU) == [
        REFERENCE,
        Choice("tensorflow", "float32", True, False),  # XLA excludes op determinism
        Choice("jax", "float32", True, True),
    ]


def test_bfloat16_is_a_candidate_where_the_device_has_units_for_it(both_backends):
    assert {c.precision for c in tuning.candidates(AUTO, BF16_CPU)} == {
        "float32",
        "mixed_bfloat16",
    }
    assert {c.precision for c in tuning.candidates(AUTO, GPU)} == {
        "float32",
        "mixed_bfloat16",
        "mixed_float16",
    }


def test_explicit_keys_narrow_the_candidates(both_backends):
    assert tuning.candidates(AUTO | {"backend": "tensorflow"}, CPU) == [
        REFERENCE,
        Choice("tensorflow", "float32", True, False),
    ]
    # op determinism asked for: TensorFlow without XLA, or JAX
    assert tuning.candidates(AUTO | {"deterministic": True}, CPU) == [
        REFERENCE,
        Choice("jax", "float32", True, True),
    ]
    assert tuning.candidates(AUTO | {"jit_compile": True}, BF16_CPU) == [
        Choice("tensorflow", "float32", True, False),
        Choice("tensorflow", "mixed_bfloat16", True, False),
        Choice("jax", "float32", True, True),
        Choice("jax", "mixed_bfloat16", True, True),
    ]


def test_keras_backend_in_the_environment_is_the_users_pick(both_backends, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert {c.backend for c in tuning.candidates(AUTO, CPU)} == {"jax"}


def test_the_record_is_named_by_device_work_and_fixed_keys(tmp_path):
    work = {
        "model": "resnet_v1",
        "depth": 20,
        "image_shape": [32, 32, 3],
        "pooling": "fixed_8x8",
        "min_image_size": 32,
        "batch_size": 32,
    }
    path = tuning.record_path(tmp_path, CPU, work, AUTO)
    assert path == (
        tmp_path
        / "test-cpu-abc-2-threads"
        / "resnet_v1-20-32x32x3-fixed_8x8-min32-batch32.json"
    )
    narrowed = tuning.record_path(tmp_path, CPU, work, AUTO | {"precision": "float32"})
    assert narrowed.name.endswith("-precision=float32.json") and narrowed != path
    assert tuning.record_path(tmp_path, GPU, work, AUTO).parent.name == "1x-nvidia-h200"


def _study(tmp_path, **compute):
    config = {
        "results_folder": str(tmp_path / "results"),
        "data": {"download": False},
        "protocol": {"model": "resnet_v1", "depth": 8, "epochs": 1},
        "compute": {"threads_per_job": 1, "tune": True, **compute},
        "experiments": {"digits": {"gammas": [0.9]}},
    }
    return load_study(config)


def _record(chosen: Choice, software: dict) -> dict:
    return {
        "format": tuning.TUNING_FORMAT,
        "software": software,
        "candidates": [chosen.as_dict() | {"images_per_second": 100.0}],
        "chosen": chosen.as_dict(),
        "speed_over_reference": 1.5,
    }


def test_a_record_is_read_by_every_later_job_and_remeasured_after_an_upgrade(
    tmp_path, monkeypatch
):
    study = _study(tmp_path, tuning_folder=str(tmp_path / "tuning"))
    settings = study.run_settings("digits", "gamma", "0.9", 0)
    compute = study.compute_settings() | {"backend": "auto"}
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # a fresh job's process
    jax_choice = Choice("jax", "float32", True, True)
    measured = []

    def fake_measure(settings, compute, folder, log, seconds=None):
        measured.append(1)
        return _record(jax_choice, tuning.software_versions(["jax"]))

    monkeypatch.setattr(tuning, "measure", fake_measure)
    for _ in range(3):
        chosen, tuned = tuning.choose(settings, compute, [], print)
        assert (chosen["backend"], chosen["deterministic"]) == ("jax", True)
        assert tuned["choice"] == jax_choice.as_dict()
    assert len(measured) == 1
    path = tuning.Path(tuned["record"])
    assert path.is_file() and path.is_relative_to(tmp_path / "tuning")
    # Another version of the software: measured again
    record = json.loads(path.read_text())
    record["software"] = {"keras": "0.0"}
    path.write_text(json.dumps(record))
    tuning.choose(settings, compute, [], print)
    assert len(measured) == 2


def test_a_resumed_run_keeps_its_earlier_attempts_choice(tmp_path, monkeypatch):
    study = _study(tmp_path)
    settings = study.run_settings("digits", "gamma", "0.9", 0)
    compute = study.compute_settings()
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    monkeypatch.setattr(
        tuning, "measure", lambda *a, **k: pytest.fail("a resumed run measured again")
    )
    device = tuning.device_description(compute)["name"]
    earlier = {
        "device": device,
        "choice": Choice("tensorflow", "mixed_bfloat16", False, True).as_dict(),
        "record": "somewhere.json",
    }
    chosen, tuned = tuning.choose(settings, compute, [{"tuned": earlier}], print)
    assert chosen["precision"] == "mixed_bfloat16" and chosen["backend"] == "tensorflow"
    assert "kept from the run's earlier attempt" in tuned["reason"]


def test_nothing_is_measured_when_every_key_is_set_or_tuning_is_off(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(
        tuning, "measure", lambda *a, **k: pytest.fail("measured though not asked")
    )
    explicit = {
        "backend": "tensorflow",
        "precision": "float32",
        "jit_compile": False,
        "deterministic": True,
    }
    study = _study(tmp_path, **explicit)
    settings = study.run_settings("digits", "gamma", "0.9", 0)
    assert tuning.choose(settings, study.compute_settings(), [], print)[1] is None
    study = _study(tmp_path, tune=False)
    assert tuning.choose(settings, study.compute_settings(), [], print)[1] is None


def _timed(choice: Choice, speed: float) -> dict:
    return choice.as_dict() | {"images_per_second": speed, "first_step_seconds": 1.0}


def test_a_setting_replaces_the_reference_only_when_faster_in_most_rounds():
    """Rounds are compared with the reference's time of the same round: a candidate
    that is faster only in a lucky round, or by less than the margin, is checked after
    the reference, so never chosen while the reference resumes bit-exactly."""
    steady = Choice("tensorflow", "mixed_bfloat16", False, True)
    lucky = Choice("tensorflow", "mixed_bfloat16", True, False)
    marginal = Choice("jax", "float32", True, True)
    speeds = {
        REFERENCE: [500, 400, 450],
        steady: [600, 380, 540],
        lucky: [900, 300, 360],
        marginal: [510, 410, 455],
    }
    rounds = [
        [_timed(choice, per_round[index]) for choice, per_round in speeds.items()]
        for index in range(3)
    ]
    measured = tuning.combine_rounds(rounds)
    by_choice = {Choice.from_dict(result): result for result in measured}
    assert by_choice[lucky]["rounds_images_per_second"] == [900, 300, 360]
    assert by_choice[lucky]["images_per_second"] == 360  # the median
    # slower in one round (a slow spell), faster in the median of the three
    assert by_choice[steady]["over_reference"] == [1.2, 0.95, 1.2]
    reference = by_choice[REFERENCE]
    order = [Choice.from_dict(r) for r in tuning.preference_order(measured, reference)]
    assert order == [steady, REFERENCE, marginal, lucky]
    # a candidate missing from a round (its process failed) is left out
    assert REFERENCE not in {
        Choice.from_dict(r)
        for r in tuning.combine_rounds([rounds[0], rounds[1][1:], rounds[2]])
    }
    # no reference among the candidates (a key fixed to another value): fastest first
    without = tuning.combine_rounds([results[1:] for results in rounds])
    assert [Choice.from_dict(r) for r in tuning.preference_order(without, None)] == [
        steady,
        marginal,
        lucky,
    ]


def test_tune_auto_measures_a_run_with_enough_training_images_only(
    tmp_path, monkeypatch
):
    """compute.tune auto: a run of training examples x epochs >= compute.tune_from_images
    measures; a smaller one (the demo, a smoke run) trains under the fixed rule and says
    why. true and false override the count."""
    monkeypatch.delitem(sys.modules, "keras", raising=False)
    measured = []

    def fake_measure(settings, compute, folder, log, seconds=None):
        measured.append(compute["tune"])
        return _record(REFERENCE, tuning.software_versions(["tensorflow"]))

    monkeypatch.setattr(tuning, "measure", fake_measure)
    study = _study(tmp_path, tune="auto", tune_from_images=1000)
    assert study.compute_settings()["tune_from_images"] == 1000
    settings = study.run_settings("digits", "gamma", "0.9", 0)
    messages = []
    below = tuning.choose(settings, study.compute_settings(), [], messages.append, 999)
    assert below[1] is None and not measured
    assert "999 images, under compute.tune_from_images (1000)" in messages[-1]
    above = tuning.choose(settings, study.compute_settings(), [], print, 1000)
    assert above[1]["choice"] == REFERENCE.as_dict() and measured == ["auto"]
    forced = _study(tmp_path, tune=True, tuning_folder=str(tmp_path / "forced"))
    assert tuning.choose(settings, forced.compute_settings(), [], print, 1)[1]
    assert len(measured) == 2

    # the shipped default: every run of the paper's study measures, no demo run does
    def training_images(config_file):
        shipped = load_study(yaml.safe_load((REPOSITORY / config_file).read_text()))
        sizes = [
            SPLIT_SIZES[experiment.dataset.name][0] * experiment.epochs
            for experiment in shipped.experiments.values()
        ]
        return shipped.compute_settings(), min(sizes), max(sizes)

    paper, smallest_paper_run, _ = training_images("config.yaml")
    demo, _, largest_demo_run = training_images("config/demo.yaml")
    assert paper["tune"] == demo["tune"] == "auto"
    assert largest_demo_run < demo["tune_from_images"]
    assert paper["tune_from_images"] <= smallest_paper_run


def test_the_default_tuning_folder_is_the_studys_unless_shared(tmp_path, monkeypatch):
    monkeypatch.delenv("SMOOTHBENCH_TUNING_FOLDER", raising=False)
    study = _study(tmp_path)
    assert study.compute_settings()["tuning_folder"] == str(
        tmp_path / "results" / "tuning"
    )
    monkeypatch.setenv("SMOOTHBENCH_TUNING_FOLDER", str(tmp_path / "shared"))
    assert study.compute_settings()["tuning_folder"] == str(tmp_path / "shared")
    study = _study(tmp_path, tuning_folder=str(tmp_path / "mine"))
    assert study.compute_settings()["tuning_folder"] == str(tmp_path / "mine")


def test_a_real_measurement_times_every_candidate_and_checks_the_choice(tmp_path):
    """In processes of their own, as a job measures (tiny network, 1 s per candidate)."""
    study = _study(tmp_path, tuning_seconds=1, tuning_rounds=2)
    settings = study.run_settings("digits", "gamma", "0.9", 0)
    script = (
        "import json, sys\n"
        "from smoothbench import tuning\n"
        "from smoothbench.study import RunSettings\n"
        "settings = RunSettings.from_dict(json.loads(sys.argv[1]))\n"
        "record = tuning.measure(settings, json.loads(sys.argv[2]), None, print)\n"
        "print('RECORD ' + json.dumps(record))\n"
    )
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            json.dumps(settings.as_dict()),
            json.dumps(study.compute_settings()),
        ],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env={k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"},
        timeout=900,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    record = json.loads(process.stdout.split("RECORD ", 1)[1])
    device = tuning.device_description(study.compute_settings())
    expected = tuning.candidates(study.compute_settings(), device)
    assert {Choice.from_dict(c) for c in record["candidates"]} == set(expected)
    assert all(
        c["images_per_second"] > 0
        and c["timed_steps"] >= 1
        and len(c["rounds_images_per_second"]) == record["rounds"] == 2
        for c in record["candidates"]
    ), (record["rounds"], record["candidates"])
    assert "round 2 of 2" in process.stdout
    # checked in order of preference until one resumed bit-exactly: that one is the choice
    assert [check["bit_exact"] for check in record["resume_checks"]] == [False] * (
        len(record["resume_checks"]) - 1
    ) + [True]
    assert record["chosen"] == record["resume_checks"][-1]["choice"]
    yaml.safe_dump(record)  # plain data
