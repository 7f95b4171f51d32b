"""smoothbench-tune (smoothbench.tools.tune_candidates, smoothbench.tools.tune): the candidates a
config leaves open, how rounds pick a setting, the compute block it writes, and one
real measurement through the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPOSITORY

from smoothbench.study import load_study, load_study_files
from smoothbench.tools import tune, tune_candidates
from smoothbench.tools.tune_measuring import REFERENCE, Choice

CPU = {
    "name": "Test CPU abc, 2 threads",
    "gpus": [],
    "cpu": {"model": "Test CPU", "features": ["avx2", "avx512f"]},
    "threads": 2,
}
BF16_CPU = CPU | {"cpu": {"model": "Test CPU", "features": ["avx512_bf16"]}}
GPU = CPU | {"name": "1x NVIDIA H200", "gpus": ["NVIDIA H200"]}


def _compute(**keys):
    config = {
        "data": {"download": False},
        "compute": {"threads_per_job": 2, **keys},
        "experiments": {"digits": {}},
    }
    return load_study(config).compute_settings()


AUTO = _compute()


@pytest.fixture
def both_backends(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(
        tune_candidates, "installed_backends", lambda: ["tensorflow", "jax"]
    )


def test_every_candidate_on_a_cpu_without_bfloat16_units_reference_first(
    both_backends,
):
    assert tune_candidates.candidates(AUTO, CPU) == [
        REFERENCE,
        Choice("tensorflow", "float32", True, False),  # XLA excludes op determinism
        Choice("jax", "float32", True, True),
    ]


def test_bfloat16_is_a_candidate_where_the_device_has_units_for_it(both_backends):
    assert {c.precision for c in tune_candidates.candidates(AUTO, BF16_CPU)} == {
        "float32",
        "mixed_bfloat16",
    }
    assert {c.precision for c in tune_candidates.candidates(AUTO, GPU)} == {
        "float32",
        "mixed_bfloat16",
        "mixed_float16",
    }


def test_explicit_keys_narrow_the_candidates(both_backends):
    assert tune_candidates.candidates(_compute(backend="tensorflow"), CPU) == [
        REFERENCE,
        Choice("tensorflow", "float32", True, False),
    ]
    # op determinism asked for: TensorFlow without XLA, or JAX
    assert tune_candidates.candidates(_compute(deterministic=True), CPU) == [
        REFERENCE,
        Choice("jax", "float32", True, True),
    ]
    assert tune_candidates.candidates(_compute(jit_compile=True), BF16_CPU) == [
        Choice("tensorflow", "float32", True, False),
        Choice("tensorflow", "mixed_bfloat16", True, False),
        Choice("jax", "float32", True, True),
        Choice("jax", "mixed_bfloat16", True, True),
    ]


def test_keras_backend_in_the_environment_is_the_users_pick(both_backends, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert {c.backend for c in tune_candidates.candidates(AUTO, CPU)} == {"jax"}


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
    measured = tune_candidates.combine_rounds(rounds)
    by_choice = {Choice.from_dict(result): result for result in measured}
    assert by_choice[lucky]["rounds_images_per_second"] == [900, 300, 360]
    assert by_choice[lucky]["images_per_second"] == 360  # the median
    # slower in one round (a slow spell), faster in the median of the three
    assert by_choice[steady]["over_reference"] == [1.2, 0.95, 1.2]
    reference = by_choice[REFERENCE]
    order = [
        Choice.from_dict(r)
        for r in tune_candidates.preference_order(measured, reference)
    ]
    assert order == [steady, REFERENCE, marginal, lucky]
    # a candidate missing from a round (its process failed) is left out
    assert REFERENCE not in {
        Choice.from_dict(r)
        for r in tune_candidates.combine_rounds([rounds[0], rounds[1][1:], rounds[2]])
    }
    # no reference among the candidates (a key fixed to another value): fastest first
    without = tune_candidates.combine_rounds([results[1:] for results in rounds])
    assert [
        Choice.from_dict(r) for r in tune_candidates.preference_order(without, None)
    ] == [
        steady,
        marginal,
        lucky,
    ]


def _record(chosen: Choice) -> dict:
    return {
        "chosen": chosen.as_dict(),
        "candidates": [_timed(chosen, 100.0) | {"over_reference_median": 1.0}],
        "resume_checks": [{"choice": chosen.as_dict(), "bit_exact": True}],
        "rounds": 1,
        "measured_at": "2026-12-03T00:00:00+00:00",
        "device": CPU,
    }


def test_the_block_is_the_pick_of_the_largest_kind_and_the_others_where_they_differ():
    xla = Choice("tensorflow", "float32", True, False)
    kinds = [
        {"experiments": ["a", "b"], "runs": 20, "record": _record(REFERENCE)},
        {"experiments": ["c"], "runs": 9, "record": _record(xla)},
        {"experiments": ["d"], "runs": 3, "record": _record(REFERENCE)},
    ]
    assert tune.compute_block(kinds) == {
        "compute": REFERENCE.as_dict() | {"experiments": {"c": xla.as_dict()}}
    }
    kinds[1]["record"] = _record(REFERENCE)
    assert tune.compute_block(kinds) == {"compute": REFERENCE.as_dict()}


def test_the_kinds_of_run_of_the_papers_study():
    study = load_study_files([REPOSITORY / "config.yaml"])
    kinds = tune.kinds_of_run(study)
    assert sum(kind["runs"] for kind in kinds) == len(study.runs()) == 108
    assert kinds[0]["runs"] == max(kind["runs"] for kind in kinds)
    mnist = next(kind for kind in kinds if "mnist" in kind["experiments"])
    assert mnist["experiments"] == ["mnist"]  # ResNet-20 on padded 28x28: its own kind
    assert tune.kind_label(mnist["settings"]) == (
        "resnet_v1-20 on 28x28x1 images, batch 32"
    )


@pytest.mark.workflow
def test_smoothbench_tune_measures_and_writes_a_block_a_study_can_layer(tmp_path):
    """The command end to end, in a process of its own as a user runs it (tiny network,
    1 s per candidate, 2 rounds): every candidate timed, the pick resume-checked, the
    block loads layered on the study, and the evidence is beside it."""
    config = {
        "results_folder": str(tmp_path / "results"),
        "data": {"download": False},
        "protocol": {"model": "resnet_v1", "depth": 8, "epochs": 1},
        "compute": {"threads_per_job": 1},
        "experiments": {"digits": {"gammas": [0.9]}},
    }
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(config))
    output = tmp_path / "compute.yaml"
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "smoothbench.tools.tune",
            "--configfile",
            str(study_file),
            "--seconds",
            "1",
            "--rounds",
            "2",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"},
        timeout=900,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    evidence = json.loads((tmp_path / "compute.evidence.json").read_text())
    (kind,) = evidence["kinds"]
    record = kind["record"]
    study = load_study(config)
    device = tune_candidates.device_description(study.compute_settings())
    expected = tune_candidates.candidates(study.compute_settings(), device)
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
    block = yaml.safe_load(output.read_text())
    assert block == {"compute": record["chosen"]}
    text = output.read_text()
    assert "chosen: " + Choice.from_dict(record["chosen"]).label() in text
    layered = load_study_files([study_file, output]).compute_settings("digits")
    assert layered.requested() == record["chosen"]
    assert layered.threads_per_job == 1  # the study's other compute keys are kept
