"""How a training job computes (smoothbench.compute.decisions): a function of its config and
its device alone, never of a timing; and a resumed run keeps the computation it began
with or stops naming what differs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest
from conftest import REPOSITORY

from smoothbench.compute import decisions
from smoothbench.compute.decisions import ComputationMismatchError
from smoothbench.compute.onednn import is_x86_64
from smoothbench.study import load_study

CPU: tuple = ()
AMPERE = ((8, 0),)
VOLTA = ((7, 0),)
NO_BACKEND: dict = {}  # an environment without KERAS_BACKEND
X86 = is_x86_64()  # compute.onednn's auto: on where TensorFlow runs on an x86-64 CPU


def _compute(**keys):
    config = {
        "data": {"download": False},
        "compute": keys,
        "experiments": {"digits": {}},
    }
    return load_study(config).compute_settings()


def test_auto_on_the_cpu_is_the_reference():
    decided = decisions.decide(_compute(), CPU, NO_BACKEND)
    assert decided.as_dict() == {
        "backend": "tensorflow",
        "precision": "float32",
        "jit_compile": False,
        "deterministic": True,
        "tf32": False,
        "onednn": X86,
    }
    assert decided.reason("precision") == "auto: no GPU"


def test_auto_reads_what_the_gpu_is():
    assert decisions.decide(_compute(), AMPERE, NO_BACKEND).precision == (
        "mixed_bfloat16"
    )
    assert decisions.decide(_compute(), VOLTA, NO_BACKEND).precision == (
        "mixed_float16"
    )
    assert decisions.decide(_compute(), ((6, 1),), NO_BACKEND).precision == ("float32")
    # the oldest GPU a job sees decides
    assert decisions.decide(_compute(), AMPERE + VOLTA, NO_BACKEND).precision == (
        "mixed_float16"
    )


def test_explicit_keys_win_and_the_backend_follows_keras_backend():
    decided = decisions.decide(
        _compute(jit_compile=True, precision="mixed_bfloat16"), CPU, NO_BACKEND
    )
    assert decided.as_dict() == {
        "backend": "tensorflow",
        "precision": "mixed_bfloat16",
        "jit_compile": True,
        "deterministic": False,  # Keras does not combine op determinism with XLA
        "tf32": False,
        "onednn": X86,
    }
    jax = decisions.decide(_compute(), CPU, {"KERAS_BACKEND": "jax"})
    assert (jax.backend, jax.jit_compile, jax.deterministic) == ("jax", True, True)
    assert decisions.decide(_compute(backend="jax"), CPU, NO_BACKEND).backend == "jax"


def test_an_experiments_own_keys_win_for_its_jobs():
    config = {
        "data": {"download": False},
        "compute": {"experiments": {"mnist": {"jit_compile": True}}},
        "experiments": {"digits": {}, "mnist": {}},
    }
    study = load_study(config)
    assert study.compute_settings("mnist").jit_compile is True
    assert study.compute_settings("digits").jit_compile == "auto"
    assert decisions.decide(study.compute_settings("mnist"), CPU, NO_BACKEND)
    with pytest.raises(Exception, match="compute.experiments.mnist"):
        load_study(
            config
            | {
                "compute": {
                    "experiments": {
                        "mnist": {"jit_compile": True, "deterministic": True}
                    }
                }
            }
        )


def test_the_removed_measuring_keys_are_refused_with_the_way_on():
    with pytest.raises(Exception) as error:
        _compute(tune=True)
    assert "compute.tune" in str(error.value) and "smoothbench-tune" in str(error.value)


RECORDED = {
    "backend": "tensorflow",
    "precision": "float32",
    "jit_compile": True,
    "deterministic": False,
    "tf32": False,
    "onednn": X86,
}


def test_tf32_is_off_unless_the_config_sets_it():
    for capabilities in (CPU, VOLTA, AMPERE):
        decided = decisions.decide(_compute(), capabilities, NO_BACKEND)
        assert decided.tf32 is False
        assert decided.reason("tf32").startswith("auto: off")
    on = decisions.decide(_compute(tf32=True), AMPERE, NO_BACKEND)
    assert (on.tf32, on.reason("tf32")) == (True, "compute.tf32")
    with pytest.raises(Exception, match="compute.tf32"):
        _compute(tf32="sometimes")
    # an experiment's own value
    config = {
        "data": {"download": False},
        "compute": {"experiments": {"digits": {"tf32": True}}},
        "experiments": {"digits": {}},
    }
    assert load_study(config).compute_settings("digits").tf32 is True


def test_a_resume_under_other_settings_stops_naming_them():
    explicit = _compute(jit_compile=False)  # XLA off now, said by the config
    decided = decisions.decide(explicit, CPU, NO_BACKEND)
    with pytest.raises(ComputationMismatchError) as error:
        decisions.reconcile(decided, RECORDED | {"measured": False}, explicit, "run")
    message = str(error.value)
    assert "jit_compile: True in the checkpoint, False now" in message
    assert "compute.jit_compile: true" in message  # the recorded settings given back
    assert "retire the run" in message and "checkpoint is kept" in message
    # the same settings: it resumes
    same = decisions.decide(_compute(jit_compile=True), CPU, NO_BACKEND)
    assert decisions.reconcile(same, RECORDED, _compute(jit_compile=True), "run")


def test_a_run_begun_under_a_measured_choice_keeps_it_where_the_config_says_auto():
    decided = decisions.decide(_compute(), CPU, NO_BACKEND)
    kept = decisions.reconcile(decided, RECORDED | {"measured": True}, _compute(), "r")
    assert kept.as_dict() == RECORDED
    assert "kept from the run's earlier attempts" in kept.reason("jit_compile")
    # a key the config now sets explicitly to something else: it stops
    explicit = _compute(jit_compile=False)
    with pytest.raises(ComputationMismatchError):
        decisions.reconcile(
            decisions.decide(explicit, CPU, NO_BACKEND),
            RECORDED | {"measured": True},
            explicit,
            "r",
        )


def test_recorded_computation_reads_the_last_attempt():
    assert decisions.recorded_computation([]) is None
    attempts = [{"backend": "jax", "precision": "float32"}]
    attempts.append(RECORDED | {"tuned": {"choice": RECORDED}})
    assert decisions.recorded_computation(attempts) == RECORDED | {
        "measured": True,
        "unrecorded": (),
    }


def test_an_attempt_of_an_earlier_version_reads_as_what_that_version_used():
    """A key an attempt does not record (an earlier version's checkpoint) reads as the
    value that version computed with: the check is made, never skipped."""
    older = {"started_at_epoch": 0, "backend": "jax", "precision": "mixed_float16"}
    recorded = decisions.recorded_computation([older])
    assert recorded == {
        "backend": "jax",
        "precision": "mixed_float16",
        "jit_compile": False,
        "deterministic": True,
        "tf32": True,  # left to TensorFlow's and JAX's default, which allows it
        "onednn": False,  # JAX does not use TensorFlow's oneDNN
        "measured": False,
        "unrecorded": ("jit_compile", "deterministic", "tf32", "onednn"),
    }
    assert decisions.UNRECORDED == {
        "backend": "tensorflow",
        "precision": "float32",
        "jit_compile": False,
        "deterministic": True,
        "tf32": True,
    }
    # an attempt of this version's format, without the TF32 key: the check stops a
    # config that now says otherwise, naming the reading
    before_tf32 = {key: value for key, value in RECORDED.items() if key != "tf32"}
    explicit = _compute(jit_compile=True, tf32=False)
    with pytest.raises(ComputationMismatchError) as error:
        decisions.reconcile(
            decisions.decide(explicit, CPU, NO_BACKEND),
            decisions.recorded_computation([before_tf32]),
            explicit,
            "run",
        )
    message = str(error.value)
    assert "tf32: True in the checkpoint (not recorded there" in message
    assert "compute.tf32: true" in message
    # left to auto, the run goes on as the earlier version computed it
    auto = _compute(jit_compile=True)
    kept = decisions.reconcile(
        decisions.decide(auto, CPU, NO_BACKEND),
        decisions.recorded_computation([before_tf32]),
        auto,
        "run",
    )
    assert kept.tf32 is True and "kept from the run's earlier attempts" in (
        kept.reason("tf32")
    )


def test_a_retry_on_another_gpu_kind_keeps_the_runs_precision_where_it_can():
    """A partition of V100s (7.0) and A100s (8.0) with precision auto: a run keeps the
    precision it began with on every GPU that supports it, and stops only where the
    GPU has no tensor cores for it."""
    auto = _compute()

    def resumed(began_on, now_on):
        first = decisions.decide(auto, began_on, NO_BACKEND).as_dict()
        return decisions.reconcile(
            decisions.decide(auto, now_on, NO_BACKEND),
            decisions.recorded_computation([first]),
            auto,
            "run",
            capabilities=now_on,
        )

    on_ampere = resumed(VOLTA, AMPERE)
    assert on_ampere.precision == "mixed_float16"
    assert "compute.precision is auto" in on_ampere.reason("precision")
    assert resumed(CPU, AMPERE).precision == "float32"  # a CPU start stays float32
    assert resumed(CPU, VOLTA).precision == "float32"
    assert resumed(AMPERE, AMPERE + AMPERE).precision == "mixed_bfloat16"
    with pytest.raises(ComputationMismatchError) as error:
        resumed(AMPERE, VOLTA)  # no bfloat16 tensor cores on a V100
    assert "precision: 'mixed_bfloat16' in the checkpoint, 'mixed_float16' now" in (
        str(error.value)
    )
    with pytest.raises(ComputationMismatchError):
        resumed(VOLTA, CPU)  # a mixed precision on no GPU at all
    # a precision the config names is never overridden: it stops
    explicit = _compute(precision="mixed_bfloat16")
    with pytest.raises(ComputationMismatchError):
        decisions.reconcile(
            decisions.decide(explicit, AMPERE, NO_BACKEND),
            decisions.recorded_computation(
                [decisions.decide(auto, VOLTA, NO_BACKEND).as_dict()]
            ),
            explicit,
            "run",
            capabilities=AMPERE,
        )


def test_the_recorded_values_win_over_auto_for_every_key():
    decided = decisions.decide(_compute(), CPU, NO_BACKEND)
    kept = decisions.reconcile(
        decided, RECORDED | {"measured": False}, _compute(), "run"
    )
    assert kept.as_dict() == RECORDED
    # a backend that is not installed here is not kept: it stops, naming it
    gone = RECORDED | {"backend": "no_such_backend_package"}
    with pytest.raises(ComputationMismatchError, match="no_such_backend_package"):
        decisions.reconcile(decided, gone, _compute(), "run")


DECIDE_IN_A_JOB = """
import dataclasses, json, sys
from smoothbench.train import loop  # what the train adapter imports
from smoothbench.train.session import set_up_session
from smoothbench.study import load_study
import numpy as np
config = json.loads(sys.argv[1])
study = load_study(config)
settings = study.run_settings("digits", "gamma", "1.0", 0)
compute = dataclasses.replace(study.compute_settings("digits"), threads_per_job=1)
session = set_up_session(
    settings, compute, np.zeros(settings.image_shape, np.float32), log=lambda m: None
)
print("COMPUTATION " + json.dumps(session.computation.as_dict()))
print("MODULES " + json.dumps(sorted(m for m in sys.modules if m.startswith("smoothbench"))))
"""


def _decide_in_a_job() -> tuple[dict, list[str]]:
    config = {
        "data": {"download": False},
        "protocol": {"model": "resnet_v1", "depth": 8, "epochs": 1},
        "experiments": {"digits": {}},
    }
    process = subprocess.run(
        [sys.executable, "-c", DECIDE_IN_A_JOB, json.dumps(config)],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env={k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"},
        timeout=600,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    lines = dict(
        line.split(" ", 1) for line in process.stdout.splitlines() if " " in line
    )
    return json.loads(lines["COMPUTATION"]), json.loads(lines["MODULES"])


def test_a_jobs_computation_is_the_same_with_the_machine_idle_and_busy():
    """The job's own set-up, in processes of their own: once on an idle machine, once
    with every core busy. No timing enters, so the two are the same; and the measuring
    code is never imported by a training job."""
    idle, modules = _decide_in_a_job()
    burners = [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(0.5)
        busy, _ = _decide_in_a_job()
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert idle == busy == decisions.decide(_compute(), CPU, NO_BACKEND).as_dict()
    assert "smoothbench.train.loop" in modules
    assert "smoothbench.tools.tune_candidates" not in modules


def test_the_computation_is_a_frozen_value():
    decided = decisions.decide(_compute(), CPU, NO_BACKEND)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decided.precision = "mixed_bfloat16"
    with pytest.raises(dataclasses.FrozenInstanceError):
        _compute().precision = "float32"
