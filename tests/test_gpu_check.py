"""The GPU check script stays ready to run: at toy sizes on this CPU (--smoke) it
measures, trains, and writes a CSV that smoothbench-cost reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import FASHION_MNIST_DIR, REPOSITORY

from smoothbench.tools import cost_estimate

pytestmark = pytest.mark.workflow  # a minute of subprocesses: not in make test-fast


def test_the_gpu_check_runs_and_writes_what_the_cost_command_reads(tmp_path):
    output, summary = tmp_path / "gpu_check.csv", tmp_path / "gpu_check.json"
    process = subprocess.run(
        [
            sys.executable,
            str(REPOSITORY / "benchmarks" / "gpu_check.py"),
            "--smoke",
            "--fashion-mnist",
            str(FASHION_MNIST_DIR),
            "--output",
            str(output),
            "--summary",
            str(summary),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    figures = json.loads(summary.read_text())
    # ResNet-20 alone and shared, then again with steps per call (2 under --smoke)
    assert [
        (line["runs_sharing"], line["steps_per_execution"])
        for line in figures["throughput"]
    ] == [(1, 1), (2, 1), (1, 2), (2, 2)]
    shared = figures["throughput"][1]
    assert len(shared["images_per_second_each"]) == 2
    assert shared["total_images_per_second"] == pytest.approx(
        sum(shared["images_per_second_each"]), abs=0.02
    )
    assert figures["cifar10_epoch_seconds_resnet20_v1"] > 0
    assert (
        figures["training"]["dataset"] == "fashion_mnist"
        and figures["training"]["epochs"] == 1
    )
    alone = cost_estimate.read_benchmark(output, "ours-jax")
    assert [(rate.network, rate.side) for rate in alone] == [("resnet_v1-20", 32)]
    assert (
        alone[0].images_per_second
        == figures["throughput"][0]["images_per_second_each"][0]
    )
    assert cost_estimate.read_benchmark(output, "ours-jax-shared2")
    per_call = cost_estimate.read_benchmark(output, "ours-jax-spe2")
    assert (
        per_call[0].images_per_second
        == figures["throughput"][2]["images_per_second_each"][0]
    )
    assert cost_estimate.read_benchmark(output, "ours-jax-spe2-shared2")
