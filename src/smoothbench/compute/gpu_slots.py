"""Which GPU a local training job uses: a lock per GPU slot, released when the job ends.

Snakemake never tells a job which GPU to use (``--resources gpu=N`` only limits how many
jobs run at once), so on a workstation every training job claims free slots itself and
sets ``CUDA_VISIBLE_DEVICES`` before the backend starts. A slot is an exclusive
``fcntl.flock`` on ``{lock folder}/gpu{id}.lock``: the kernel releases it when the
process ends, however it ends (exception, SIGTERM, SIGKILL, a power cut leaves no lock
file to clean up either, as a lock lives only in the kernel).

- A SLURM job that sees exactly the GPUs it asked for (one job per training run, the
  executor plugin's way) claims nothing: the scheduler chose them. Inside an allocation
  with more GPUs (``salloc --gpus=4`` then a local run), jobs claim among the
  allocation's GPUs, with locks private to that allocation.
- A job that asks for 0 GPUs gets ``CUDA_VISIBLE_DEVICES=""``, so it neither trains on
  nor reserves memory of a GPU another job holds.
- With ``compute.runs_per_gpu`` N > 1, each GPU has N slots
  (``gpu{id}.share{k}.lock``): never more than N jobs on one GPU, the first jobs spread
  over the GPUs.
- The slots are ``SMOOTHBENCH_GPU_SLOTS`` (comma-separated ids) when set, else the
  ``CUDA_VISIBLE_DEVICES`` the workflow was started with, else the GPUs ``nvidia-smi``
  lists; with none, the job trains on the CPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import TextIO

from smoothbench.errors import SmoothbenchError

SLOTS_VARIABLE = "SMOOTHBENCH_GPU_SLOTS"
LOCK_FOLDER_VARIABLE = "SMOOTHBENCH_GPU_LOCK_DIR"


class GpuSlotError(SmoothbenchError, RuntimeError):
    """No usable GPU slot (e.g. a job asks for more GPUs than the machine has)."""


def listed_gpus(value: str) -> list[str]:
    """The GPU ids of a ``CUDA_VISIBLE_DEVICES``-style list; [] for "", "-1" or
    "NoDevFiles" (SLURM's word for none)."""
    slots = [slot.strip() for slot in value.split(",") if slot.strip()]
    return [] if slots in ([], ["-1"], ["NoDevFiles"]) else slots


def available_slots(environment: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids this machine offers to training jobs (see the module docstring)."""
    environment = os.environ if environment is None else environment
    for variable in (SLOTS_VARIABLE, "CUDA_VISIBLE_DEVICES"):
        value = environment.get(variable)
        # set, even to nothing: that is the answer ("" or -1: no GPU)
        if value is not None:
            return listed_gpus(value)
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listing = subprocess.run(
            ["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [
        str(index)
        for index, line in enumerate(listing.stdout.splitlines())
        if line.startswith("GPU ")
    ]


def lock_folder(environment: Mapping[str, str] | None = None) -> Path:
    """Where the slot locks live: one folder per user and machine (GPUs are per machine),
    or per SLURM allocation inside one."""
    environment = os.environ if environment is None else environment
    name = f"smoothbench-gpu-slots-{os.getuid()}"
    if environment.get("SLURM_JOB_ID"):
        name += f"-slurm-{environment['SLURM_JOB_ID']}"
    folder = environment.get(LOCK_FOLDER_VARIABLE) or os.path.join(
        tempfile.gettempdir(), name
    )
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _try_lock(path: Path) -> TextIO | None:
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    # for people looking at the folder; the lock is the flock
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def gpus_given(
    count: int, claimed: list[str], environment: Mapping[str, str] | None = None
) -> str | None:
    """What GPUs a training job was given, in words, or None: the Snakemake resource
    ``gpu`` (``count``), the slots it claimed, or the GPUs SLURM chose for it."""
    environment = os.environ if environment is None else environment
    given = []
    if count > 0:
        given.append(f"the Snakemake resource gpu={count} (compute.gpus_per_job)")
    if claimed:
        given.append(f"GPU slot {','.join(claimed)}")
    visible = environment.get("CUDA_VISIBLE_DEVICES", "")
    if environment.get("SLURM_JOB_ID") and listed_gpus(visible):
        given.append(f"SLURM's CUDA_VISIBLE_DEVICES={visible!r}")
    return "; ".join(given) or None


def _lock_names(slots: list[str], runs_per_gpu: int) -> list[tuple[str, str]]:
    """(slot, lock file name) candidates: one lock per GPU, or ``runs_per_gpu`` shares
    of each, ordered so that the first jobs spread over the GPUs."""
    if runs_per_gpu == 1:
        return [(slot, f"gpu{slot}.lock") for slot in slots]
    return [
        (slot, f"gpu{slot}.share{share}.lock")
        for share in range(runs_per_gpu)
        for slot in slots
    ]


@contextlib.contextmanager
def claimed_slots(
    count: int,
    log: Callable[[str], None] = print,
    environment: MutableMapping[str, str] | None = None,
    poll_seconds: float = 2.0,
    runs_per_gpu: int = 1,
) -> Iterator[list[str]]:
    """Hold ``count`` free GPU slots for the duration of the block, with
    ``CUDA_VISIBLE_DEVICES`` set to them; yields the slot ids ([] on the CPU or under
    SLURM). Waits while every slot is held by other jobs. With ``runs_per_gpu`` N,
    up to N jobs hold one GPU each (``count`` must be 1 then)."""
    environment = os.environ if environment is None else environment
    if runs_per_gpu < 1 or (runs_per_gpu > 1 and count > 1):
        raise GpuSlotError(
            f"compute.runs_per_gpu {runs_per_gpu} needs compute.gpus_per_job 1, not {count}"
        )
    # Under SLURM the GPUs it chose are the job's; with count 0, those of a GRES the
    # profile asked for instead of --gpus (a shard of a GPU that several jobs share).
    given_by_slurm = count == 0 and listed_gpus(
        environment.get("CUDA_VISIBLE_DEVICES", "")
    )
    if environment.get("SLURM_JOB_ID") and (
        given_by_slurm or len(available_slots(environment)) <= count
    ):
        log(
            f"GPUs chosen by SLURM: CUDA_VISIBLE_DEVICES={environment.get('CUDA_VISIBLE_DEVICES', '')!r}"
        )
        yield []
        return
    if count == 0:
        environment["CUDA_VISIBLE_DEVICES"] = ""
        log("no GPU asked for (compute.gpus_per_job = 0): training on the CPU")
        yield []
        return
    slots = available_slots(environment)
    if not slots:
        environment["CUDA_VISIBLE_DEVICES"] = ""
        log(
            f"no GPU found (nvidia-smi, CUDA_VISIBLE_DEVICES, {SLOTS_VARIABLE}) although the job asks for "
            f"{count} (compute.gpus_per_job)"
        )
        yield []
        return
    if count > len(slots):
        raise GpuSlotError(
            f"a training job asks for {count} GPUs (config key 'compute.gpus_per_job') but this machine "
            f"offers {len(slots)} ({', '.join(slots)}); lower compute.gpus_per_job or set {SLOTS_VARIABLE}"
        )
    folder = lock_folder(environment)
    candidates = _lock_names(slots, runs_per_gpu)
    held: list[tuple[str, str, TextIO]] = []
    waited = False
    try:
        while True:
            # all or nothing: two jobs holding one slot each of the two they need would wait forever
            for slot, name in candidates:
                if any(slot == taken for taken, _, _ in held):
                    continue  # two slots of one job are two GPUs
                handle = _try_lock(folder / name)
                if handle is not None:
                    held.append((slot, name, handle))
                    if len(held) == count:
                        break
            if len(held) == count:
                break
            for _, _, handle in held:
                handle.close()
            held = []
            if not waited:
                log(
                    f"waiting for a free GPU slot: all of {', '.join(slots)} are held by other jobs ({folder})"
                )
                waited = True
            time.sleep(poll_seconds)
        ids = [slot for slot, _, _ in held]
        environment["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
        shared = (
            f"; {held[0][1]}, one of {runs_per_gpu} per GPU" if runs_per_gpu > 1 else ""
        )
        log(
            f"GPU slot {','.join(ids)} claimed at {time.time():.3f} (CUDA_VISIBLE_DEVICES={','.join(ids)}{shared})"
        )
        yield ids
    finally:
        for _, _, handle in held:
            handle.close()  # closing the file drops the flock
        if held:
            log(
                f"GPU slot {','.join(slot for slot, _, _ in held)} released at {time.time():.3f}"
            )
