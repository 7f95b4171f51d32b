"""GPU slots for local training jobs: exclusive, released on any exit, never under SLURM.
Fake slot ids on the CPU: a slot is only a lock and an environment variable."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from smoothbench.compute import gpu_slots


@pytest.mark.parametrize(
    "environment, expected",
    [
        ({"SMOOTHBENCH_GPU_SLOTS": "2,3", "CUDA_VISIBLE_DEVICES": "0"}, ["2", "3"]),
        ({"SMOOTHBENCH_GPU_SLOTS": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "1, 3"}, ["1", "3"]),
        ({"CUDA_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
    ],
)
def test_the_slots_come_from_the_environment_first(environment, expected):
    assert gpu_slots.available_slots(environment) == expected


def _environment(tmp_path, slots="0,1"):
    return {"SMOOTHBENCH_GPU_SLOTS": slots, "SMOOTHBENCH_GPU_LOCK_DIR": str(tmp_path)}


def test_no_gpu_asked_hides_the_gpus_and_slurm_chooses_its_own(tmp_path):
    environment = _environment(tmp_path)
    with gpu_slots.claimed_slots(
        0, log=lambda _: None, environment=environment
    ) as slots:
        assert slots == [] and environment["CUDA_VISIBLE_DEVICES"] == ""
    environment = {
        "SLURM_JOB_ID": "7",
        "CUDA_VISIBLE_DEVICES": "3",
        "SMOOTHBENCH_GPU_LOCK_DIR": str(tmp_path),
    }
    with gpu_slots.claimed_slots(
        1, log=lambda _: None, environment=environment
    ) as slots:
        # SLURM chose it
        assert slots == [] and environment["CUDA_VISIBLE_DEVICES"] == "3"
    assert not list(tmp_path.glob("gpu*.lock"))  # nothing was claimed
    environment = {
        "SMOOTHBENCH_GPU_SLOTS": "",
        "SMOOTHBENCH_GPU_LOCK_DIR": str(tmp_path),
    }
    with gpu_slots.claimed_slots(
        1, log=lambda _: None, environment=environment
    ) as slots:
        # no GPU: the CPU
        assert slots == [] and environment["CUDA_VISIBLE_DEVICES"] == ""


def test_asking_for_more_gpus_than_the_machine_has_names_the_config_key(tmp_path):
    with pytest.raises(
        gpu_slots.GpuSlotError,
        match=r"asks for 3 GPUs \(config key 'compute.gpus_per_job'\).*offers 2",
    ):
        with gpu_slots.claimed_slots(
            3, log=lambda _: None, environment=_environment(tmp_path)
        ):
            pass


def _hold(lock_folder, count, seconds, queue):
    environment = {
        "SMOOTHBENCH_GPU_SLOTS": "0,1",
        "SMOOTHBENCH_GPU_LOCK_DIR": lock_folder,
    }
    with gpu_slots.claimed_slots(
        count, log=lambda _: None, environment=environment, poll_seconds=0.05
    ) as slots:
        start = time.time()
        assert environment["CUDA_VISIBLE_DEVICES"] == ",".join(slots)
        time.sleep(seconds)
        end = time.time()
    queue.put((tuple(slots), start, end))


def test_four_jobs_on_two_slots_never_share_one(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_hold, args=(str(tmp_path), 1, 0.6, queue))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    held = [queue.get(timeout=5) for _ in workers]
    assert {slots for slots, _, _ in held} == {("0",), ("1",)}
    for index, (slots, start, end) in enumerate(held):
        for other_slots, other_start, other_end in held[index + 1 :]:
            if slots == other_slots:
                assert end <= other_start or other_end <= start, (
                    "two jobs held the same slot at once"
                )
    # four jobs of 0.6 s on two slots take at least two rounds
    assert max(end for _, _, end in held) - min(start for _, start, _ in held) >= 1.1


CLAIM_AND_WAIT = """
import sys, time
from smoothbench.compute import gpu_slots
environment = {"SMOOTHBENCH_GPU_SLOTS": sys.argv[1], "SMOOTHBENCH_GPU_LOCK_DIR": sys.argv[2]}
with gpu_slots.claimed_slots(1, log=lambda _: None, environment=environment) as slots:
    print(slots[0], flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_job_that_dies_frees_its_slot(tmp_path, how):
    holder = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_WAIT, "0", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "0"
    environment = _environment(tmp_path, slots="0")
    waits = []
    # while the holder lives, the slot is taken: a claim waits
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    waiter = context.Process(target=_hold, args=(str(tmp_path), 1, 0.0, queue))
    # (the waiter's slots are "0,1": it must take slot 1, never 0)
    waiter.start()
    waiter.join(timeout=30)
    assert queue.get(timeout=5)[0] == ("1",)
    os.kill(holder.pid, how)
    holder.wait(timeout=30)
    started = time.monotonic()
    with gpu_slots.claimed_slots(
        1, log=waits.append, environment=environment, poll_seconds=0.05
    ) as slots:
        assert slots == ["0"]
    assert time.monotonic() - started < 5
    assert not any("waiting" in line for line in waits)


def test_a_job_needing_two_slots_holds_none_while_it_waits(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_WAIT, "0", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "0"
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        greedy = context.Process(target=_hold, args=(str(tmp_path), 2, 0.0, queue))
        greedy.start()
        time.sleep(1.0)  # it is waiting for slot 0 now
        assert greedy.is_alive()
        # slot 1 is free for anyone else meanwhile: the waiting job did not keep it
        with gpu_slots.claimed_slots(
            1,
            log=lambda _: None,
            environment=_environment(tmp_path, slots="1"),
            poll_seconds=0.05,
        ) as slots:
            assert slots == ["1"]
    finally:
        holder.kill()
        holder.wait()
    greedy.join(timeout=30)
    assert greedy.exitcode == 0 and queue.get(timeout=5)[0] == ("0", "1")


def test_inside_a_slurm_allocation_with_more_gpus_jobs_claim_among_them(tmp_path):
    environment = {
        "SLURM_JOB_ID": "8",
        "CUDA_VISIBLE_DEVICES": "2,5",
        "SMOOTHBENCH_GPU_LOCK_DIR": str(tmp_path),
    }
    with gpu_slots.claimed_slots(
        1, log=lambda _: None, environment=dict(environment)
    ) as first:
        with gpu_slots.claimed_slots(
            1, log=lambda _: None, environment=dict(environment)
        ) as second:
            assert sorted(first + second) == ["2", "5"]
    assert gpu_slots.lock_folder({"SLURM_JOB_ID": "8"}).name.endswith("-slurm-8")


def _hold_share(lock_folder, runs_per_gpu, seconds, queue, barrier):
    barrier.wait(timeout=120)  # all claim at once, however long each took to start
    environment = {
        "SMOOTHBENCH_GPU_SLOTS": "0,1",
        "SMOOTHBENCH_GPU_LOCK_DIR": lock_folder,
    }
    lines = []
    with gpu_slots.claimed_slots(
        1,
        log=lines.append,
        environment=environment,
        poll_seconds=0.05,
        runs_per_gpu=runs_per_gpu,
    ) as slots:
        start = time.time()
        time.sleep(seconds)
        end = time.time()
    queue.put(
        (slots[0], start, end, next(line for line in lines if "claimed at" in line))
    )


def _most_at_once(intervals):
    """The largest number of (start, end) intervals that overlap at one instant."""
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]
    )
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


def test_runs_per_gpu_shares_each_gpu_among_that_many_jobs_never_more(tmp_path):
    """compute.runs_per_gpu 3 on two (fake) GPUs: 10 jobs, never more than 3 on a GPU
    at once, both GPUs and every share used, and 6 jobs at once at most."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    barrier = context.Barrier(10)
    workers = [
        context.Process(
            target=_hold_share, args=(str(tmp_path), 3, 1.0, queue, barrier)
        )
        for _ in range(10)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    held = [queue.get(timeout=5) for _ in workers]
    for slot in ("0", "1"):
        on_slot = [
            (start, end) for held_slot, start, end, _ in held if held_slot == slot
        ]
        assert on_slot, f"GPU {slot} was never used"
        assert _most_at_once(on_slot) <= 3, f"more than 3 jobs on GPU {slot} at once"
    assert 3 < _most_at_once([(start, end) for _, start, end, _ in held]) <= 6
    shares = sorted(line.split("; ")[1].split(",")[0] for *_, line in held)
    assert set(shares) == {
        f"gpu{slot}.share{k}.lock" for slot in "01" for k in range(3)
    }
    assert all("one of 3 per GPU" in line for *_, line in held)


def test_runs_per_gpu_needs_one_gpu_per_job(tmp_path):
    with pytest.raises(
        gpu_slots.GpuSlotError, match="runs_per_gpu 2 needs compute.gpus_per_job 1"
    ):
        with gpu_slots.claimed_slots(
            2, log=lambda _: None, environment=_environment(tmp_path), runs_per_gpu=2
        ):
            pass


@pytest.mark.parametrize(
    "count, claimed, environment, named",
    [
        (0, [], {}, None),
        (1, [], {}, "gpu=1"),
        (1, ["3"], {}, "GPU slot 3"),
        (
            0,
            [],
            {"SLURM_JOB_ID": "5", "CUDA_VISIBLE_DEVICES": "0"},
            "SLURM's CUDA_VISIBLE_DEVICES='0'",
        ),
        (0, [], {"SLURM_JOB_ID": "5", "CUDA_VISIBLE_DEVICES": ""}, None),
    ],
)
def test_what_a_job_was_given_in_gpus(count, claimed, environment, named):
    given = gpu_slots.gpus_given(count, claimed, environment)
    assert given is None if named is None else named in given


def test_a_slurm_job_given_a_shard_instead_of_gpus_keeps_the_gpu_slurm_chose():
    """gpu resource 0 with a GRES (gres: shard:1 in the profile): SLURM's
    CUDA_VISIBLE_DEVICES is the job's GPU, not a reason to train on the CPU."""
    environment = {"SLURM_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": "0"}
    lines = []
    with gpu_slots.claimed_slots(0, lines.append, environment, runs_per_gpu=2) as slots:
        assert slots == []
        assert environment["CUDA_VISIBLE_DEVICES"] == "0"
    assert lines == ["GPUs chosen by SLURM: CUDA_VISIBLE_DEVICES='0'"]
    assert gpu_slots.gpus_given(0, [], environment) == (
        "SLURM's CUDA_VISIBLE_DEVICES='0'"
    )
    # no GRES either: a SLURM job asked for no GPU trains on the CPU, as before
    environment = {"SLURM_JOB_ID": "8", "CUDA_VISIBLE_DEVICES": ""}
    with gpu_slots.claimed_slots(0, lines.append, environment) as slots:
        assert slots == [] and environment["CUDA_VISIBLE_DEVICES"] == ""
    assert gpu_slots.gpus_given(0, [], environment) is None
