"""What every job adapter shares: its log, its one-line errors, and the checkout check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smoothbench.pipeline import jobs

PACKAGE = Path(jobs.__file__).resolve().parents[1]


def test_a_job_that_imported_another_copy_of_the_package_stops_naming_both(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("SMOOTHBENCH_SOURCE", str(PACKAGE.parent))
    jobs.check_source()  # the checkout's own copy: fine
    monkeypatch.setenv("SMOOTHBENCH_SOURCE", str(tmp_path / "other-clone" / "src"))
    with pytest.raises(jobs.WrongCheckoutError) as error:
        jobs.check_source()
    message = str(error.value)
    assert f"imported smoothbench from {PACKAGE}" in message
    assert (
        str(tmp_path / "other-clone" / "src" / "smoothbench") in message
        and "pip uninstall" in message
    )
    # Inside a job's log context: the job fails before its body runs, the terminal says why.
    ran = []
    with pytest.raises(SystemExit), jobs.logged(tmp_path / "job.log"):
        ran.append(True)
    assert not ran
    assert "error: this job imported smoothbench from" in capfd.readouterr().err


def test_an_interrupted_job_says_what_happened_not_an_empty_error(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.delenv("SMOOTHBENCH_SOURCE", raising=False)
    with pytest.raises(KeyboardInterrupt):
        with jobs.logged(tmp_path / "job.log"):
            raise KeyboardInterrupt
    terminal = capfd.readouterr().err
    assert (
        "error: interrupted (Ctrl-C)" in terminal
        and "resumes from its last checkpoint" in terminal
    )
    assert "error: \n" not in terminal
    assert jobs.describe_error(ValueError()) == "ValueError"


# TensorFlow's start-up lines on a machine without a CUDA driver, as a CPU job's log had them.
ABSL_HEADER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
CUDART = (
    "I0000 00:00:1796612653.968123     732 cudart_stub.cc:31] Could not find cuda drivers "
    "on your machine, GPU will not be used."
)
CUINIT = (
    "E0000 00:00:1796612671.999266     732 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"
)
ONEDNN = (
    "I0000 00:00:1796649553.323012   15897 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off "
    "errors from different computation orders. To turn them off, set the environment "
    "variable `TF_ENABLE_ONEDNN_OPTS=0`."
)
REAL_WARNING = "W0000 00:00:1796612672.000001     732 some_op.cc:12] a real warning"


def _job_log(log: Path, program: str, gpu: bool = False, **environment) -> list[str]:
    """The log of a job (a Python process of its own, as Snakemake runs a rule's
    script) that runs ``program`` inside :func:`workflow_support.logged`."""
    import subprocess
    import sys
    import textwrap

    code = (
        "import os, sys, warnings\n"
        "from smoothbench.pipeline.jobs import logged\n"
        f"with logged({str(log)!r}, gpu={gpu!r}):\n" + textwrap.indent(program, "    ")
    )
    inherited = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TF_CPP_MIN_LOG_LEVEL", "SMOOTHBENCH_SOURCE")
    }
    process = subprocess.run(
        [sys.executable, "-c", code],
        env={**inherited, **environment},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    return log.read_text().splitlines()


# A job that prints its own line, TensorFlow's start-up lines, a real warning, a Python
# warning and a last line without a newline.
NOISY_JOB = f"""
print("smoothbench: the job's own line", flush=True)
for line in {[ABSL_HEADER, CUDART, ONEDNN, ABSL_HEADER, CUDART, CUINIT, ONEDNN, REAL_WARNING]!r}:
    os.write(2, (line + "\\n").encode())
warnings.warn("a real Python warning")
print("no newline at the end", end="", flush=True)
"""


def test_a_cpu_jobs_log_starts_with_its_own_lines_and_keeps_real_warnings(tmp_path):
    lines = _job_log(tmp_path / "cpu.log", NOISY_JOB)
    assert lines[0].endswith("not a SLURM job")  # where_this_runs()
    assert lines[1] == "smoothbench: the job's own line"
    assert lines[2] == REAL_WARNING
    assert "UserWarning: a real Python warning" in lines[3]
    assert lines[-1] == "no newline at the end"
    assert not [line for line in lines if "cuInit" in line or "absl" in line]
    assert ONEDNN not in lines  # the job's own computation line says oneDNN on or off
    # a job given a GPU keeps the CUDA probing: there it says why the GPU is not seen
    lines = _job_log(tmp_path / "gpu.log", NOISY_JOB, gpu=True)
    assert CUDART in lines and CUINIT in lines and ABSL_HEADER not in lines
    # TF_CPP_MIN_LOG_LEVEL=0 set by the user: every line
    lines = _job_log(tmp_path / "all.log", NOISY_JOB, TF_CPP_MIN_LOG_LEVEL="0")
    assert lines.count(ABSL_HEADER) == 2 and CUINIT in lines


@pytest.mark.workflow
def test_tensorflows_own_start_up_lines_stay_out_of_a_cpu_jobs_log(tmp_path):
    """The real thing: TensorFlow imported and asked for GPUs inside a job's log context,
    on a CPU (no CUDA driver here, or every GPU hidden): no cuInit or cudart_stub line,
    and a warning still reaches the log."""
    program = f"""
print("smoothbench: first line", flush=True)
import tensorflow as tf
tf.config.list_physical_devices("GPU")
os.write(2, {(REAL_WARNING + chr(10)).encode()!r})
print("smoothbench: last line", flush=True)
"""
    lines = _job_log(tmp_path / "job.log", program, CUDA_VISIBLE_DEVICES="")
    assert lines[1:] == [
        "smoothbench: first line",
        REAL_WARNING,
        "smoothbench: last line",
    ], lines
