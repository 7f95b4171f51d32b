"""Backend, precision and XLA choices (smoothbench.compute.backends) and the XLA-friendly shift."""

import sys

import keras
import numpy as np
import pytest
import scipy.ndimage

from smoothbench.compute import backends
from smoothbench.compute.backends import (
    AccelerationError,
    resolve_jit_compile,
    resolve_precision,
)
from smoothbench.config import ConfigError
from smoothbench.models.resnet import RandomShift, build_resnet, build_training_model
from smoothbench.study import load_study


@pytest.mark.parametrize(
    "requested, capabilities, policy",
    [
        ("auto", [], "float32"),  # the CPU
        ("auto", [(9, 0)], "mixed_bfloat16"),  # H100
        ("auto", [(8, 0), (8, 6)], "mixed_bfloat16"),  # A100 + RTX 3090
        ("auto", [(7, 0)], "mixed_float16"),  # V100
        ("auto", [(8, 0), (7, 5)], "mixed_float16"),  # the oldest GPU decides
        ("auto", [(6, 0)], "float32"),  # P100: no tensor cores
        # asked for: honoured, even on the CPU
        ("mixed_bfloat16", [], "mixed_bfloat16"),
        ("float32", [(9, 0)], "float32"),
    ],
)
def test_precision_resolution(requested, capabilities, policy):
    assert resolve_precision(requested, capabilities)[0] == policy


def test_an_unknown_precision_names_its_config_key():
    with pytest.raises(
        AccelerationError, match="config key 'compute.precision': 'float8'"
    ):
        resolve_precision("float8", [])


@pytest.mark.parametrize(
    "requested, backend, has_gpu, deterministic, expected",
    [
        # the CPU: XLA measured faster (benchmarks/)
        ("auto", "tensorflow", False, False, True),
        ("auto", "tensorflow", True, False, True),
        # Keras refuses XLA with op determinism
        ("auto", "tensorflow", True, True, False),
        ("auto", "tensorflow", False, True, False),
        ("auto", "jax", False, True, True),  # JAX always compiles
        ("auto", "torch", True, False, False),
        (True, "tensorflow", False, False, True),
        (False, "jax", True, False, False),
    ],
)
def test_jit_compile_resolution(requested, backend, has_gpu, deterministic, expected):
    assert (
        resolve_jit_compile(requested, backend, has_gpu, deterministic)[0] is expected
    )


def test_xla_with_tensorflows_op_determinism_is_refused_naming_both_keys():
    with pytest.raises(
        AccelerationError, match="'compute.jit_compile' .* 'compute.deterministic'"
    ):
        resolve_jit_compile(True, "tensorflow", True, True)


def _config(**compute):
    return {"compute": compute, "experiments": {"digits": {}}}


def test_the_config_refuses_xla_with_determinism_before_any_job_starts(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    with pytest.raises(
        ConfigError,
        match="'compute.jit_compile' \\(true\\) and 'compute.deterministic' \\(true\\)",
    ):
        load_study(_config(jit_compile=True, deterministic=True))
    assert (
        load_study(_config(jit_compile=True, deterministic=False))
        .compute_settings()
        .jit_compile
        is True
    )
    # JAX has no such conflict.
    assert (
        load_study(_config(backend="jax", jit_compile=True, deterministic=True))
        .compute_settings()
        .backend
        == "jax"
    )


def test_the_schema_rejects_an_unknown_backend():
    with pytest.raises(ConfigError, match="compute.backend"):
        load_study(_config(backend="mxnet"))


def test_defaults_are_auto():
    compute = load_study(_config()).compute_settings()
    assert (compute.backend, compute.precision, compute.jit_compile) == (
        "auto",
        "auto",
        "auto",
    )


def test_a_backend_other_than_the_imported_one_is_refused():
    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    with pytest.raises(
        AccelerationError,
        match=f"asks for {other}, but Keras was already imported with",
    ):
        backends.select_backend(other)
    assert backends.select_backend(keras.backend.backend()) == keras.backend.backend()


def test_a_backend_that_is_not_installed_is_named(monkeypatch):
    # as in a fresh job, before Keras is imported
    monkeypatch.delitem(sys.modules, "keras")
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    with pytest.raises(
        AccelerationError,
        match="config key 'compute.backend' asks for torch, but the package 'torch'",
    ):
        backends.select_backend("torch")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    with pytest.raises(
        AccelerationError, match="environment variable KERAS_BACKEND asks for jax"
    ):
        backends.select_backend("auto")
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    with pytest.raises(AccelerationError, match="KERAS_BACKEND='theano'"):
        backends.select_backend("auto")


# --- RandomShift: ImageDataGenerator's shift, written for XLA ---------------------------------


def _shifted(images, vertical, horizontal):
    layer = RandomShift(0.1, 0.1)
    x = keras.ops.convert_to_tensor(images)
    x = keras.ops.einsum(
        "bih,bhwc->biwc",
        layer.interpolation_matrix(
            keras.ops.convert_to_tensor(vertical), images.shape[1]
        ),
        x,
    )
    x = keras.ops.einsum(
        "bjw,biwc->bijc",
        layer.interpolation_matrix(
            keras.ops.convert_to_tensor(horizontal), images.shape[2]
        ),
        x,
    )
    return keras.ops.convert_to_numpy(x)


def test_the_shift_is_scipys_bilinear_shift_with_nearest_fill():
    """An independent implementation: scipy.ndimage.shift, spline order 1 (ImageDataGenerator's
    interpolation order), mode "nearest" (its fill_mode)."""
    rng = np.random.default_rng(0)
    images = rng.random((4, 9, 7, 3), dtype=np.float32)
    vertical = np.array([0.0, 2.0, -1.25, 0.6], dtype=np.float32)
    # 6.5 > width - 1: all border
    horizontal = np.array([0.0, -3.0, 0.5, 6.5], dtype=np.float32)
    ours = _shifted(images, vertical, horizontal)
    for index in range(len(images)):
        expected = scipy.ndimage.shift(
            images[index],
            (vertical[index], horizontal[index], 0),
            order=1,
            mode="nearest",
        )
        np.testing.assert_allclose(ours[index], expected, atol=1e-5)
    np.testing.assert_array_equal(ours[0], images[0])  # no shift: the image itself


def test_the_random_shift_stays_within_its_factor_and_is_the_identity_outside_training():
    keras.utils.set_random_seed(0)
    # Channel 0 holds each pixel's row, channel 1 its column: bilinear resampling of these
    # ramps is exact, so the centre pixel of a shifted image tells the shift (dy, dx).
    size = 20
    rows, columns = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.repeat(
        np.stack([rows, columns], axis=-1)[None].astype(np.float32), 256, axis=0
    )
    layer = RandomShift(0.1, 0.1)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(layer(images, training=False)), images
    )
    centre = keras.ops.convert_to_numpy(layer(images, training=True))[
        :, size // 2, size // 2, :
    ]
    shifts = size // 2 - centre  # (dy, dx) per image, in pixels
    # up to 10 % of the side, as ImageDataGenerator
    assert np.abs(shifts).max() <= 0.1 * size + 1e-4
    assert (shifts.min(axis=0) < -1.5).all() and (
        shifts.max(axis=0) > 1.5
    ).all()  # both ways, both axes
    # the two axes are drawn independently
    assert np.abs(np.corrcoef(shifts.T)[0, 1]) < 0.2
    # continuous, not whole pixels
    assert len(np.unique(np.round(shifts[:, 0], 3))) > 200


def test_the_training_model_can_be_xla_compiled():
    """Keras' RandomTranslation opts out of XLA (``supports_jit = False``), which turns
    compilation off for the whole model and leaves JAX uncompiled; no layer of the
    training model may do that."""
    classifier = build_resnet("resnet_v1", 8, (32, 32, 3), 10)
    model = build_training_model(
        classifier, (32, 32, 3), np.zeros((32, 32, 3), np.float32)
    )
    opted_out = [
        layer.name for layer in model._flatten_layers() if not layer.supports_jit
    ]
    assert opted_out == []
    assert any(isinstance(layer, RandomShift) for layer in model.layers)


def test_accelerators_give_the_device_line_and_the_gpu_capabilities():
    assert backends.visible_accelerators() == []  # this suite runs on CPUs
    assert backends.describe_accelerators([]) == "CPU"
    found = [("NVIDIA H100 80GB HBM3", (9, 0)), ("TPU v4", None)]
    assert backends.describe_accelerators(found) == "NVIDIA H100 80GB HBM3, TPU v4"
    assert backends.gpu_compute_capabilities(found) == [(9, 0)]  # only GPUs have one


def test_jax_determinism_is_added_to_the_users_own_xla_flags():
    environment = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    assert backends.agree_xla_determinism(True, "jax", environment) is None
    assert environment["XLA_FLAGS"] == (
        "--xla_cpu_enable_fast_math=false --xla_gpu_deterministic_ops=true"
    )
    backends.agree_xla_determinism(True, "jax", environment)  # once
    assert environment["XLA_FLAGS"].count("deterministic_ops") == 1
    empty: dict = {}
    backends.agree_xla_determinism(True, "jax", empty)
    assert empty == {"XLA_FLAGS": "--xla_gpu_deterministic_ops=true"}
    # TensorFlow's op determinism needs no flag; a run that is not deterministic
    # keeps whatever the user set
    for backend, deterministic in (("tensorflow", True), ("jax", False)):
        untouched = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
        backends.agree_xla_determinism(deterministic, backend, untouched)
        assert untouched == {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    theirs = {"XLA_FLAGS": "--xla_gpu_deterministic_ops=false"}
    assert backends.agree_xla_determinism(False, "jax", theirs) is None
    assert theirs == {"XLA_FLAGS": "--xla_gpu_deterministic_ops=false"}


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_a_users_contrary_determinism_flag_is_overwritten_with_a_note(backend):
    """A deterministic run never runs with XLA's non-deterministic kernels while its
    attempt records deterministic: the user's other flags are kept."""
    theirs = {"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_gpu_deterministic_ops=false"}
    note = backends.agree_xla_determinism(True, backend, theirs)
    assert theirs == {
        "XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_gpu_deterministic_ops=true"
    }
    assert "XLA_FLAGS had --xla_gpu_deterministic_ops=false" in note
    assert "compute.deterministic: false" in note
    again = backends.agree_xla_determinism(True, backend, theirs)
    assert again is None  # they agree now
    zero = {"XLA_FLAGS": "--xla_gpu_deterministic_ops=0"}
    assert backends.agree_xla_determinism(True, backend, zero)
    assert zero == {"XLA_FLAGS": "--xla_gpu_deterministic_ops=true"}


def test_which_gpus_support_a_precision():
    supported = backends.precision_supported
    assert supported("float32", []) and supported("float32", [(6, 0)])
    assert supported("mixed_float16", [(7, 0)]) and supported("mixed_float16", [(8, 0)])
    assert not supported("mixed_float16", []) and not supported(
        "mixed_float16", [(6, 1)]
    )
    assert supported("mixed_bfloat16", [(8, 0), (9, 0)])
    assert not supported("mixed_bfloat16", [(8, 0), (7, 0)])  # every GPU must
    assert not supported("bfloat8", [(9, 0)])


def test_tf32_resolution():
    assert backends.resolve_tf32("auto")[0] is False
    assert backends.resolve_tf32(True) == (True, "compute.tf32")
    assert backends.resolve_tf32(False) == (False, "compute.tf32")
    with pytest.raises(AccelerationError, match="compute.tf32"):
        backends.resolve_tf32("yes")
    defaults = load_study(_config()).compute_settings()
    assert defaults.tf32 == "auto"


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow's own switch"
)
def test_set_tf32_is_what_tensorflow_reports():
    import tensorflow as tf

    before = tf.config.experimental.tensor_float_32_execution_enabled()
    try:
        for enabled in (False, True, False):
            backends.set_tf32(enabled)
            assert tf.config.experimental.tensor_float_32_execution_enabled() is enabled
            assert backends.tf32_enabled() is enabled
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


# A fresh process (this one has Keras imported): the job's import of Keras, with the
# packages Keras and TensorFlow would import for features the job never uses either held
# back (``held``) or already imported (``preloaded``); then 3 steps of ResNet-8 on digits.
IMPORT_AND_TRAIN = """
import hashlib, json, sys
mode, settings, prepared = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
if mode == "preloaded":
    import jax, matplotlib.pyplot, pandas, sklearn
from smoothbench.compute import backends
backends.select_backend("tensorflow")
backends.configure_backend(1, deterministic=True)
imported = [name for name in backends.OPTIONAL_AT_IMPORT if name in sys.modules]
import keras, numpy as np
from smoothbench.data import array_store
from smoothbench.data.batches import ArrayBatches
from smoothbench.settings import RunSettings
from smoothbench.train import network
_, arrays = array_store.open_prepared(prepared)
settings = RunSettings.from_dict(settings)
_, model, _ = network.build_for_training(settings, np.asarray(arrays["mean"]), "float32", False)
rows = np.arange(3 * settings.batch_size)
model.fit(ArrayBatches(arrays["train_images"], arrays["train_labels"], settings.batch_size, order=rows), epochs=1, verbose=0, shuffle=False)
digest = hashlib.sha256()
for variable in model.variables + model.optimizer.variables:
    digest.update(keras.ops.convert_to_numpy(variable).tobytes())
import pandas  # held back at Keras' import only: it imports as usual afterwards
print(json.dumps({"imported": imported, "variables": digest.hexdigest()}))
"""


def test_the_job_imports_keras_without_the_packages_it_never_uses_and_computes_the_same(
    tmp_path,
):
    """TensorFlow and Keras import scikit-learn, pandas, matplotlib and JAX whenever
    they are installed (a third of a training job's TensorFlow import); the job's
    import holds them back, and a step computes the very same variables either way."""
    import json
    import subprocess

    from test_training import TINY, _settings

    from smoothbench.data.preparation import prepare

    study = load_study(TINY)
    prepared = tmp_path / "digits"
    prepare(study.data_settings("digits"), prepared)
    settings = json.dumps(_settings(study, gamma="0.9"))
    seen = {}
    for mode in ("held", "preloaded"):
        process = subprocess.run(
            [sys.executable, "-c", IMPORT_AND_TRAIN, mode, settings, str(prepared)],
            capture_output=True,
            text=True,
        )
        assert process.returncode == 0, process.stderr[-3000:]
        seen[mode] = json.loads(process.stdout.splitlines()[-1])
    assert seen["held"]["imported"] == [], seen
    assert seen["preloaded"]["imported"] == list(backends.OPTIONAL_AT_IMPORT), seen
    assert seen["held"]["variables"] == seen["preloaded"]["variables"]
