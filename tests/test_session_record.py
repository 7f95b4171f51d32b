"""What a training job sets up and what its attempt records, in a job's own process
under each backend: TF32 set as decided (off unless the config says so) and reported so
by TensorFlow and JAX themselves, a user's contrary XLA determinism flag overwritten
with a note, and the attempt's computation, device, XLA_FLAGS, code and library
versions recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPOSITORY

pytest.importorskip("keras")

SET_UP_IN_A_JOB = """
import dataclasses, json, os, sys
from smoothbench.compute import backends
from smoothbench.train.checkpoint import Progress
from smoothbench.train.session import attempt_record, set_up_session
from smoothbench.study import load_study
import numpy as np
config = json.loads(sys.argv[1])
study = load_study(config)
settings = study.run_settings("digits", "gamma", "1.0", 0)
notes, found = [], {}
for tf32 in ("auto", True):
    compute = dataclasses.replace(
        study.compute_settings("digits"), threads_per_job=1, tf32=tf32
    )
    session = set_up_session(
        settings, compute, np.zeros(settings.image_shape, np.float32), log=notes.append
    )
    import keras
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        reported = tf.config.experimental.tensor_float_32_execution_enabled()
    else:
        import jax
        reported = jax.config.jax_default_matmul_precision
    found[str(tf32)] = {
        "reported": reported,
        "ours": backends.tf32_enabled(),
        "attempt": attempt_record(Progress({}), session),
    }
print("RESULT " + json.dumps({"found": found, "notes": notes,
                              "xla_flags": os.environ.get("XLA_FLAGS", "")}))
"""


def _set_up(backend: str, xla_flags: str | None = None) -> dict:
    config = {
        "data": {"download": False},
        "protocol": {"model": "resnet_v1", "depth": 8, "epochs": 1},
        "compute": {"backend": backend},
        "experiments": {"digits": {}},
    }
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KERAS_BACKEND", "XLA_FLAGS")
    }
    if xla_flags is not None:
        environment["XLA_FLAGS"] = xla_flags
    process = subprocess.run(
        [sys.executable, "-c", SET_UP_IN_A_JOB, json.dumps(config)],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env=environment,
        timeout=600,
    )
    assert process.returncode == 0, process.stdout + process.stderr[-4000:]
    return json.loads(process.stdout.split("RESULT ", 1)[1])


def _check_attempt(attempt: dict, backend: str, tf32: bool) -> None:
    assert attempt["backend"] == backend and attempt["tf32"] is tf32
    assert attempt["device"] == "CPU"
    assert attempt["code_version"]
    # this checkout's own commit (the tests run from the git checkout)
    head = subprocess.run(
        ["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert attempt["code_commit"] == head and isinstance(attempt["code_dirty"], bool)
    assert attempt["versions"]["keras"]
    assert attempt["versions"][backend]
    assert "cuda" not in attempt["versions"]  # on the CPU: no CUDA to record


def test_tensorflow_reports_tf32_as_decided():
    result = _set_up("tensorflow")
    auto, on = result["found"]["auto"], result["found"]["True"]
    assert auto["reported"] is False and auto["ours"] is False
    assert on["reported"] is True and on["ours"] is True
    _check_attempt(auto["attempt"], "tensorflow", False)
    _check_attempt(on["attempt"], "tensorflow", True)
    assert auto["attempt"]["xla_flags"] == ""
    assert result["notes"] == []


def test_jax_reports_tf32_as_decided_and_its_determinism_flag_agrees():
    """A user's --xla_gpu_deterministic_ops=false under a deterministic run is
    overwritten (their other flags kept), said in the log, and recorded."""
    theirs = "--xla_cpu_enable_fast_math=false --xla_gpu_deterministic_ops=false"
    result = _set_up("jax", theirs)
    auto, on = result["found"]["auto"], result["found"]["True"]
    assert auto["reported"] == "float32" and auto["ours"] is False
    assert on["reported"] == "tensorfloat32" and on["ours"] is True
    _check_attempt(auto["attempt"], "jax", False)
    assert auto["attempt"]["versions"]["jaxlib"]
    agreed = "--xla_cpu_enable_fast_math=false --xla_gpu_deterministic_ops=true"
    assert result["xla_flags"] == agreed
    assert auto["attempt"]["xla_flags"] == agreed
    assert auto["attempt"]["deterministic"] is True
    (note,) = result["notes"]
    assert "--xla_gpu_deterministic_ops=false" in note and "deterministic" in note
