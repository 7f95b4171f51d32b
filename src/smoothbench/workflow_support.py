"""What the thin ``workflow/scripts`` adapters share: logging to the rule's log file;
and what the rules check while planning (:func:`gpu_warning`)."""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import socket
import subprocess
import sys
import traceback
from pathlib import Path

from smoothbench.errors import SmoothbenchError

# TensorFlow's C++ INFO lines (CUDA probing, CPU features) bury the progress lines in a
# job's log; warnings and errors still show. A value set by the user wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


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
        base = Path(__file__).resolve().parent.parent
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
    environment: dict | None = None,
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
    environment: dict | None = None,
) -> str | None:
    """The warning the workflow prints while planning (its plan summary,
    :mod:`smoothbench.plan_summary`) when this machine has NVIDIA GPUs (``nvidia-smi
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
    imported = Path(__file__).resolve().parent
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


@contextlib.contextmanager
def logged(log_path: str | os.PathLike):
    """Send everything the job prints (TensorFlow's C++ output included) to ``log_path``.

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
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
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
    if failed:
        raise SystemExit(1)
