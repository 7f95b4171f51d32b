"""What the thin ``workflow/scripts`` adapters share: logging to the rule's log file;
and what the rules check while planning (:func:`gpu_warning`)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

from smoothbench.errors import SmoothbenchError

# TensorFlow's C++ INFO lines (CUDA probing, CPU features) bury the progress lines in a
# job's log; warnings and errors still show. A value set by the user wins, and 0 (show
# everything) also keeps the start-up lines below.
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

# Start-up lines of TensorFlow and XLA that say nothing is wrong, left out of a job's log
# (:func:`logged`). Printed before absl's logging is set up, the first ones show at any
# TF_CPP_MIN_LOG_LEVEL; the cuInit line is logged as an error. Only these exact lines go:
# every other line, warnings and errors included, reaches the log.
QUIET_ALWAYS = (
    # the header absl prints above its first line before logging is set up
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    # TensorFlow and JAX's CUDA plugins in one process register these twice
    r"Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory for plugin "
    r"cu\w+ when one has already been registered$",
    r"computation placer already registered\. Please check linkage",
    # TensorFlow's note at import that oneDNN is on (twice), with advice to set
    # TF_ENABLE_ONEDNN_OPTS, which the job sets itself from compute.onednn: its own
    # computation line says oneDNN on or off, and why
    r"port\.cc:\d+\] oneDNN custom operations are on\. ",
)
# ... and, on a job given no GPU, TensorFlow probing for a CUDA driver it does not need
# (with a GPU, the same lines say why it cannot see it, and stay).
QUIET_WITHOUT_GPU = (
    r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine, GPU will not be used\.$",
    r"\] failed call to cuInit: ",
)
# The process that copies a job's output into its log without those lines (run with
# python -I -c, patterns as JSON in argv[1]): in a session of its own and deaf to
# SIGINT, SIGTERM and SIGHUP, so that a job stopped by a signal (a time limit, Ctrl-C)
# still gets every line it writes while it stops; it ends when the job's end of the pipe
# closes. A partial line is written once 0.2 s pass without more.
_FILTER_PROGRAM = """
import json, os, re, select, signal, sys
for name in ("SIGINT", "SIGTERM", "SIGHUP"):
    signal.signal(getattr(signal, name), signal.SIG_IGN)
drop = [re.compile(pattern.encode()) for pattern in json.loads(sys.argv[1])]
source, sink, pending = sys.stdin.fileno(), sys.stdout.fileno(), b""
def write(data):
    while data:
        data = data[os.write(sink, data):]
while True:
    if pending and not select.select([source], [], [], 0.2)[0]:
        write(pending)
        pending = b""
        continue
    chunk = os.read(source, 1 << 16)
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\\n")
    write(b"".join(line + b"\\n" for line in lines if not any(p.search(line) for p in drop)))
write(pending)
"""


def where_this_runs() -> str:
    """One line for the top of a job's log: when, on which host, in which SLURM job."""
    job = os.environ.get("SLURM_JOB_ID")
    place = f"SLURM job {job}" if job else "not a SLURM job"
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return f"{now} on {socket.gethostname()}, {place}"


def use_checkout(source_folder: str) -> None:
    """Make every job the workflow starts import smoothbench from ``source_folder``.

    A job inherits PYTHONPATH, whose entries come before site-packages, so an editable
    install of another clone cannot win; SMOOTHBENCH_SOURCE tells the job which copy it
    must have imported (:func:`check_source`)."""
    os.environ["SMOOTHBENCH_SOURCE"] = source_folder
    others = [
        entry
        for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if entry and entry != source_folder
    ]
    os.environ["PYTHONPATH"] = os.pathsep.join([source_folder, *others])


def code_fingerprint(base: str | os.PathLike | None) -> str:
    """sha256 of the package's and the job scripts' source text under the checkout
    ``base`` (their content, not their mtimes): the results stage reruns when it changes.
    ``base`` None (the workflow used as a module, the package installed): the installed
    package's source."""
    import hashlib

    digest = hashlib.sha256()
    if base is None:
        base = Path(__file__).resolve().parents[2]
        files = list((base / "smoothbench").rglob("*.py"))
    else:
        base = Path(base)
        files = [
            *(base / "src" / "smoothbench").rglob("*.py"),
            *(base / "workflow" / "scripts").glob("*.py"),
        ]
    for path in sorted(files):
        digest.update(path.relative_to(base).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def nvidia_gpus(
    which=shutil.which,
    run=subprocess.run,
    environment: Mapping[str, str] | None = None,
) -> list[str] | None:
    """The GPUs ``nvidia-smi -L`` lists and ``CUDA_VISIBLE_DEVICES`` does not hide:
    their lines; [] on a machine without NVIDIA GPUs (or with every GPU hidden); None
    when nvidia-smi is there but could not say."""
    environment = os.environ if environment is None else environment
    if environment.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1"):
        return []
    if which("nvidia-smi") is None:
        return []
    try:
        listing = run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listing.returncode != 0:
        return None
    return [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]


def gpu_warning(
    study,
    which=shutil.which,
    run=subprocess.run,
    environment: Mapping[str, str] | None = None,
) -> str | None:
    """The warning the workflow prints while planning (its plan summary,
    :mod:`smoothbench.pipeline.plan_summary`) when this machine has NVIDIA GPUs (``nvidia-smi
    -L`` lists one) and no training job of ``study`` asks for one (config key
    ``compute.gpus_per_job`` is 0 for every experiment): every run would train on the
    CPU, silently. None otherwise, and where ``CUDA_VISIBLE_DEVICES`` hides every GPU
    (training on the CPU on purpose)."""
    if any(study.compute_settings(name).gpus_per_job > 0 for name in study.experiments):
        return None
    gpus = nvidia_gpus(which, run, environment)
    if not gpus:
        return None
    rule = "=" * 78
    return "\n".join(
        [
            rule,
            f"WARNING: this machine has {len(gpus)} NVIDIA GPU(s) (nvidia-smi -L), but no "
            "training job of this study asks for one: config key compute.gpus_per_job is 0 "
            "for every experiment, so every run trains on the CPU.",
            "A config file given alone (--configfile mine.yaml) replaces config.yaml, and "
            "with it config.yaml's compute.gpus_per_job: 1. To train on the GPUs, set it:",
            "  in your file:           compute: {gpus_per_job: 1}",
            "  on the command line:    --config 'compute={gpus_per_job: 1}'",
            "  in a machine file:      --configfile mine.yaml machine.yaml",
            "(--configfile config.yaml mine.yaml keeps config.yaml's gpus_per_job: 1, but "
            "also adds config.yaml's experiments to yours: config/README.md, 'Study file "
            "and machine file'.) To train on the CPU on purpose, hide the GPUs: "
            "CUDA_VISIBLE_DEVICES= snakemake ...",
            rule,
        ]
    )


class WrongCheckoutError(SmoothbenchError, RuntimeError):
    """The job imported another copy of smoothbench than the workflow's checkout."""


def check_source() -> None:
    """Stop a job whose ``smoothbench`` is not the workflow's checkout's.

    The workflow (workflow/rules/common.smk) names its ``src`` folder in
    SMOOTHBENCH_SOURCE and puts it first on PYTHONPATH; a job that imported the package
    from anywhere else (say an editable install of another clone) would run other code
    than the one the config was checked with."""
    expected = os.environ.get("SMOOTHBENCH_SOURCE")
    if not expected:
        return  # not started by the workflow (a test, a notebook)
    imported = Path(__file__).resolve().parents[1]
    wanted = Path(expected).resolve() / "smoothbench"
    if imported != wanted:
        raise WrongCheckoutError(
            f"this job imported smoothbench from {imported}, but the workflow runs from {wanted}; "
            "another copy of the package is installed in this environment (e.g. `pip install -e` of another "
            "clone) and comes first on sys.path. Run `pip uninstall smoothbench` there, or install this "
            "checkout (`make setup`)"
        )


def describe_error(error: BaseException) -> str:
    """The one line a user reads: the message, or what happened when there is none."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C); a training run resumes from its last checkpoint when the workflow runs again"
    if isinstance(error, SystemExit):
        return f"the job exited with status {error.code}"
    return str(error) or type(error).__name__


def quiet_patterns(gpu: bool) -> list[str]:
    """The start-up lines :func:`logged` leaves out: none where the user set
    TF_CPP_MIN_LOG_LEVEL=0; on a job given a GPU (``gpu``), not the CUDA probing."""
    if USER_TF_LOG_LEVEL == "0":
        return []
    return [*QUIET_ALWAYS, *([] if gpu else QUIET_WITHOUT_GPU)]


def start_log_filter(log, patterns: list[str]):
    """(the write end of a pipe, the process that copies it into the open file ``log``
    without the lines matching ``patterns``); None when there is nothing to leave out
    or the process cannot start (the job then writes to its log directly)."""
    if not patterns:
        return None
    read, write = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", _FILTER_PROGRAM, json.dumps(patterns)],
            stdin=read,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    except OSError:
        os.close(write)
        return None
    finally:
        os.close(read)
    return write, process


@contextlib.contextmanager
def logged(log_path: str | os.PathLike, gpu: bool = False):
    """Send everything the job prints (TensorFlow's C++ output included) to ``log_path``.

    The job's log starts with smoothbench's own lines: TensorFlow's and XLA's start-up
    lines that say nothing is wrong (:data:`QUIET_ALWAYS`, and on a job given no GPU,
    ``gpu`` False, :data:`QUIET_WITHOUT_GPU`) are left out, every other line is kept.
    On an exception the traceback goes to the log and a one-paragraph error to the
    terminal the workflow runs in, then the exception propagates so the job fails.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.dup(2)
    saved_out = os.dup(1)
    failed = False
    with open(log_path, "a", buffering=1) as log:
        log_filter = start_log_filter(log, quiet_patterns(gpu))
        target = log.fileno() if log_filter is None else log_filter[0]
        os.dup2(target, 1)
        os.dup2(target, 2)
        if log_filter is not None:
            os.close(log_filter[0])
        try:
            print(where_this_runs(), flush=True)
            check_source()
            yield
        except BaseException as error:
            traceback.print_exc()
            sys.stderr.flush()
            os.write(
                terminal,
                f"\nerror: {describe_error(error)}\n(full log: {log_path})\n".encode(),
            )
            if isinstance(error, SmoothbenchError):
                failed = (
                    True  # a message for the user: no second traceback on the terminal
                )
            else:
                raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_out, 1)
            os.dup2(terminal, 2)
            os.close(saved_out)
            os.close(terminal)
            if log_filter is not None:
                # the pipe is closed here: the filter writes what is left, then ends
                # (unless a process the job started still holds the pipe open)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    log_filter[1].wait(timeout=10)
    if failed:
        raise SystemExit(1)
