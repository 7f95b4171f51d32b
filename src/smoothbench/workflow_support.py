"""What the thin ``workflow/scripts`` adapters share: logging to the rule's log file."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
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
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return f"{now} on {socket.gethostname()}, {place}"


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
            yield
        except BaseException as error:
            traceback.print_exc()
            sys.stderr.flush()
            os.write(terminal, f"\nerror: {error}\n(full log: {log_path})\n".encode())
            if isinstance(error, SmoothbenchError):
                failed = True  # a message for the user: no second traceback on the terminal
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
