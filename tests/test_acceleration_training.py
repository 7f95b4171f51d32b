"""Mixed precision, XLA and the JAX backend in real training jobs (a few minutes on 2 CPU cores).

- Each precision / XLA switch trains the paper's ResNet-20 v1 for one epoch on real
  Fashion-MNIST images (Debian's dataset-fashion-mnist): the loss stays finite and the
  first-epoch training accuracy stays within noise of the default run's, the noise
  being what a second seed of the default moves it by plus three binomial standard
  errors of a difference over 4,000 images.
- One short job per installed Keras backend runs through the workflow with
  ``compute.backend`` set, Label Smoothing++ included (it overrides ``compute_loss``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest

from conftest import FASHION_MNIST_DIR, run_workflow
from smoothbench import training
from smoothbench.config import load_study

TRAINING_IMAGES = 4000
VALIDATION_IMAGES = 1000
FASHION_CONFIG = {
    "data": {
        "download": False,
        "source_dirs": {"fashion_mnist": str(FASHION_MNIST_DIR)},
        "splits": {"fashion_mnist": {"train": f"train[:{TRAINING_IMAGES}]", "validation": f"test[:{VALIDATION_IMAGES}]"}},
    },
    # The paper's ResNet-20 v1 recipe: 28x28 padded to 32, fixed 8x8 pool, batch 32, Adam 1e-3.
    "protocol": {"model": "resnet_v1", "depth": 20, "epochs": 1, "gammas": [0.9]},
    "seeds": [0, 1],
    "compute": {"gpus_per_job": 0, "threads_per_job": 2},
    "experiments": {"fashion_mnist": {}},
}
TRAIN_ONE = """
import json, sys
from smoothbench.config import load_study
from smoothbench.training import train
config, compute, seed, prepared, run = json.loads(sys.argv[1])
study = load_study(config)
settings = study.train_settings("fashion_mnist", "gamma", "0.9", seed)
train(settings, study.compute_settings() | compute, prepared, run)
"""


@pytest.fixture(scope="module")
def fashion_mnist(tmp_path_factory):
    assert (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(), (
        f"{FASHION_MNIST_DIR} lacks Fashion-MNIST: `apt-get install dataset-fashion-mnist`"
    )
    workdir = tmp_path_factory.mktemp("fashion")
    config = json.loads(json.dumps(FASHION_CONFIG))
    config["data"]["tfds_data_dir"] = str(workdir / "tfds")
    process = run_workflow(workdir, config, "--cores", "2", "--until", "prepare")
    assert process.returncode == 0, process.stdout
    return workdir, config


def _train(fashion_mnist, name: str, compute: dict, seed: int = 0) -> dict:
    workdir, config = fashion_mnist
    run = workdir / "runs" / name
    arguments = json.dumps([config, compute, seed, str(workdir / "results" / "prepared" / "fashion_mnist"), str(run)])
    process = subprocess.run([sys.executable, "-c", TRAIN_ONE, arguments], capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stdout + process.stderr[-4000:]
    metrics = json.loads((run / training.METRICS_FILE).read_text())
    metrics["history"] = training.read_history(run / training.HISTORY_FILE)
    metrics["log"] = process.stdout
    return metrics


@pytest.fixture(scope="module")
def default_runs(fashion_mnist):
    """The default compute settings on this CPU (deterministic, float32, no XLA), seeds 0 and 1."""
    return [_train(fashion_mnist, f"default-seed{seed}", {}, seed) for seed in (0, 1)]


def test_the_default_on_the_cpu_is_deterministic_float32_without_xla(default_runs):
    attempt = default_runs[0]["attempts"][-1]
    assert (attempt["backend"], attempt["precision"], attempt["jit_compile"]) == ("tensorflow", "float32", False)
    # compute.deterministic (true by default) keeps TensorFlow's op determinism, which excludes XLA.
    assert "precision float32 (auto: no GPU); XLA off (auto: compute.deterministic asks" in default_runs[0]["log"]


@pytest.mark.parametrize(
    "compute, precision, jit_compile",
    [
        ({"jit_compile": True, "deterministic": False}, "float32", True),
        ({"precision": "mixed_bfloat16"}, "mixed_bfloat16", False),
        ({"precision": "mixed_float16"}, "mixed_float16", False),  # Keras adds a dynamic loss scale
    ],
    ids=["xla", "mixed_bfloat16", "mixed_float16"],
)
def test_a_switch_keeps_the_first_epoch_accuracy_within_noise(fashion_mnist, default_runs, compute, precision, jit_compile):
    run = _train(fashion_mnist, f"{precision}-{jit_compile}", compute)
    attempt = run["attempts"][-1]
    assert (attempt["precision"], attempt["jit_compile"]) == (precision, jit_compile)
    assert math.isfinite(run["history"][0]["loss"]) and math.isfinite(run["history"][0]["val_loss"])
    # The first epoch's training accuracy (over its 4,000 images): after one short epoch the
    # validation accuracy mostly measures how far BatchNorm's moving statistics lag.
    default, other_seed = (r["history"][0]["accuracy"] for r in default_runs)
    accuracy = run["history"][0]["accuracy"]
    # Noise: the default's own seed-to-seed change, plus 3 standard errors of the difference
    # of two accuracies measured on 4,000 images.
    tolerance = abs(default - other_seed) + 3 * math.sqrt(2 * default * (1 - default) / TRAINING_IMAGES)
    assert default > 0.4, default_runs[0]["history"]  # chance is 0.10: the default learned
    assert abs(accuracy - default) <= tolerance, (
        f"{precision}, XLA {jit_compile}: first-epoch accuracy {accuracy:.4f} vs the default's {default:.4f} "
        f"(seed 1: {other_seed:.4f}); noise allows {tolerance:.4f}"
    )
    print(f"{precision}, XLA {jit_compile}: {accuracy:.4f}; default {default:.4f}, seed 1 {other_seed:.4f}, "
          f"tolerance {tolerance:.4f}; validation {run['history'][0]['val_accuracy']:.4f}")


def _installed_backends() -> list[str]:
    # TensorFlow and JAX are both in the test extras, so CI must have them; PyTorch only when a user adds it.
    return ["tensorflow", "jax"] + (["torch"] if importlib.util.find_spec("torch") else [])


DIGITS_CONFIG = {
    "data": {"download": False},
    "protocol": {
        "model": "resnet_v1", "depth": 8, "epochs": 3, "batch_size": 32, "pooling": "global", "min_image_size": 0,
        "augmentation": {"horizontal_flip": False}, "gammas": [0.9],
    },
    "methods": {"lspp": {"values": [0.1], "experiments": "all"}},
    "compute": {"gpus_per_job": 0, "threads_per_job": 2},
    "experiments": {"digits": {}},
}


@pytest.mark.parametrize("backend", _installed_backends())
def test_a_training_job_runs_under_each_installed_backend(tmp_path, backend):
    config = json.loads(json.dumps(DIGITS_CONFIG))
    config["compute"]["backend"] = backend
    process = run_workflow(tmp_path, config, "--cores", "2", "--until", "train", "train_lspp")
    assert process.returncode == 0, process.stdout
    study = load_study(config)
    runs = study.runs()
    assert {run.method for run in runs} == {"gamma", "lspp"}
    for run in runs:
        folder = tmp_path / run.folder()
        metrics = json.loads((folder / training.METRICS_FILE).read_text())
        assert metrics["backend"] == backend and metrics["attempts"][-1]["backend"] == backend
        assert metrics["attempts"][-1]["jit_compile"] is (backend == "jax")  # auto on this CPU
        assert backend in metrics["software"]
        history = training.read_history(folder / training.HISTORY_FILE)
        assert all(math.isfinite(row["loss"]) for row in history)
        assert history[-1]["loss"] < history[0]["loss"]
        assert metrics["best_val_accuracy"] > 0.5, (run, history)  # 10 classes: chance is 0.1
    log = (tmp_path / "results" / "logs" / "train").rglob("*.log")
    assert any(f"({backend})" in path.read_text() for path in log)
