"""TensorFlow's oneDNN kernels as a computation key (smoothbench.compute.onednn): the
fixed rule reads what the device is and never a timing, the job sets the switch before
TensorFlow starts and refuses a TensorFlow that started otherwise, and a resume under
the other state stops naming it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from test_computation import _compute

from smoothbench.compute import decisions, onednn
from smoothbench.compute.decisions import ComputationMismatchError

AVX2 = frozenset({"sse4_1", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"}
AVX512_BF16 |= {"avx512_bf16"}


def test_the_rule_reads_the_cpu_architecture_and_the_backend_only(monkeypatch):
    def no_clock(*_):
        raise AssertionError("the rule read a clock")

    monkeypatch.setattr(time, "perf_counter", no_clock)
    monkeypatch.setattr(time, "time", no_clock)
    monkeypatch.setattr(time, "monotonic", no_clock)
    assert onednn.resolve_onednn("auto", "tensorflow", "x86_64") == (
        True,
        "auto: on, TensorFlow on an x86-64 CPU",
    )
    assert onednn.resolve_onednn("auto", "tensorflow", "aarch64")[0] is False
    assert onednn.resolve_onednn("auto", "jax", "x86_64")[0] is False
    assert onednn.resolve_onednn(False, "tensorflow", "x86_64") == (
        False,
        "compute.onednn",
    )
    with pytest.raises(onednn.OneDnnError, match="compute.onednn"):
        onednn.resolve_onednn(True, "jax", "x86_64")
    # decide: the same config, backend and machine give the same value, every time
    for machine, expected in (("x86_64", True), ("AMD64", True), ("aarch64", False)):
        values = {
            decisions.decide(_compute(), (), {}, machine).onednn for _ in range(3)
        }
        assert values == {expected}, machine
    assert decisions.decide(_compute(onednn=False), (), {}, "x86_64").onednn is False
    assert decisions.decide(_compute(), (), {"KERAS_BACKEND": "jax"}).onednn is False
    with pytest.raises(Exception, match="compute.onednn"):
        _compute(onednn="fast")


def test_tensorflows_own_default_and_the_instruction_set_follow_the_cpu_flags():
    """What a run begun before the key existed computed with: TensorFlow's default,
    on only where the CPU has AVX-512 VNNI/BF16, AVX-VNNI or AMX."""
    assert onednn.tensorflow_default("tensorflow", AVX2, "x86_64") is False
    assert onednn.tensorflow_default("tensorflow", AVX512_BF16, "x86_64") is True
    assert onednn.tensorflow_default("jax", AVX512_BF16, "x86_64") is False
    assert onednn.instruction_set(True, AVX2) == "avx2"
    assert onednn.instruction_set(True, AVX512_BF16) == "avx512_core_bf16"
    assert onednn.instruction_set(False, AVX512_BF16) == ""


def test_a_resume_under_the_other_onednn_state_stops_naming_it():
    began = decisions.decide(_compute(onednn=False), (), {}, "x86_64").as_dict()
    now = _compute(onednn=True)
    with pytest.raises(ComputationMismatchError) as error:
        decisions.reconcile(
            decisions.decide(now, (), {}, "x86_64"),
            decisions.recorded_computation([began]),
            now,
            "run",
        )
    message = str(error.value)
    assert "onednn: False in the checkpoint, True now (compute.onednn)" in message
    assert "compute.onednn: false" in message
    # left to auto, the run keeps the state it began with
    auto = _compute()
    kept = decisions.reconcile(
        decisions.decide(auto, (), {}, "x86_64"),
        decisions.recorded_computation([began]),
        auto,
        "run",
    )
    assert kept.onednn is False
    assert "kept from the run's earlier attempts" in kept.reason("onednn")


def test_an_attempt_from_before_the_key_reads_as_tensorflows_default_here():
    before = {"backend": "tensorflow", "precision": "float32", "jit_compile": False}
    recorded = decisions.recorded_computation([before])
    assert recorded["onednn"] is onednn.tensorflow_default("tensorflow")
    assert "onednn" in recorded["unrecorded"]
    jax_before = decisions.recorded_computation([{"backend": "jax"}])
    assert jax_before["onednn"] is False


CHECK = """
import os, sys
from smoothbench.compute import onednn
os.environ[onednn.VARIABLE] = sys.argv[1]  # a site's own value
onednn.set_environment(sys.argv[2] == "on", "tensorflow")  # what the job decided
print("variable", os.environ[onednn.VARIABLE])
import tensorflow
print("tensorflow", onednn.tensorflow_enabled())
onednn.check_tensorflow_agrees(sys.argv[2] == "on", "tensorflow")
print("agrees")
"""

LATE = """
import os
import tensorflow
from smoothbench.compute import onednn
onednn.set_environment(True, "tensorflow")  # too late: TensorFlow read it at import
onednn.check_tensorflow_agrees(True, "tensorflow")
"""


@pytest.mark.parametrize(("preset", "decided"), [("0", "on"), ("1", "off")])
def test_the_job_overwrites_the_variable_and_tensorflow_follows_it(preset, decided):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, preset, decided],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wanted = decided == "on"
    assert f"variable {'1' if wanted else '0'}" in done.stdout
    assert f"tensorflow {wanted}" in done.stdout and "agrees" in done.stdout


def test_a_tensorflow_started_in_the_other_state_is_refused():
    environment = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", LATE],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert done.returncode != 0
    assert "OneDnnError" in done.stderr
    assert "TensorFlow runs with oneDNN off" in done.stderr
    assert "says on (compute.onednn)" in done.stderr
