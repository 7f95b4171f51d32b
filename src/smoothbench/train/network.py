"""A run's network as training builds it: the ResNet with its input pipeline
(:func:`build_model`), compiled with its method's loss (:func:`compile_for_method`),
seeded and with its optimizer (:func:`build_for_training`); the method's loss on the
validation split (:func:`validation_loss`) and its name in logs
(:func:`describe_method`)."""

from __future__ import annotations

import numpy as np

from smoothbench.compute import backends
from smoothbench.models.shapes import padded_shape, padding_to
from smoothbench.settings import RunSettings


def build_model(settings: RunSettings | dict, mean: np.ndarray):
    """(classifier, training model) for ``settings``; the training model takes uint8 images."""
    settings = RunSettings.from_dict(settings)
    from smoothbench.models.resnet import build_resnet, build_training_model

    image_shape = tuple(settings.image_shape)
    classifier = build_resnet(
        settings.model,
        settings.depth,
        padded_shape(image_shape, settings.min_image_size),
        settings.num_classes,
        settings.pooling,
    )
    model = build_training_model(
        classifier,
        image_shape,
        mean,
        padding=padding_to(image_shape, settings.min_image_size),
        subtract_mean=settings.mean_subtraction,
        shift=settings.augmentation["shift"],
        horizontal_flip=settings.augmentation["horizontal_flip"],
    )
    return classifier, model


def describe_method(settings: RunSettings | dict) -> str:
    """``gamma=0.9``, ``alpha=0.1``, ``lspp alpha=0.1``: a run's method as logs print it."""
    settings = RunSettings.from_dict(settings)
    method, value = settings.method, settings.value
    return (
        f"{method}={value}"
        if method in ("gamma", "alpha")
        else f"{method} alpha={value}"
    )


def compile_for_method(
    model,
    settings: RunSettings | dict,
    optimizer,
    jit_compile="auto",
    steps_per_execution: int = 1,
):
    """``model`` compiled with the loss of ``settings.method``; Label Smoothing++ wraps it
    in :class:`smoothbench.train.losses.LabelSmoothingPlusPlusModel` (its C is a weight of the
    wrapper). ``jit_compile`` is Keras' (:mod:`smoothbench.compute.backends` resolves it);
    ``steps_per_execution`` (compute.steps_per_execution) too, and changes no number.
    Returns the model to train; under ``mixed_float16`` its ``optimizer`` is Keras' loss
    scale wrapper around ``optimizer``."""
    settings = RunSettings.from_dict(settings)
    import keras

    from smoothbench.train.losses import (
        FixedTargetCrossEntropy,
        LabelSmoothingPlusPlusModel,
    )

    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if settings.method == "lspp":
        from smoothbench.models.resnet import L2_WEIGHT

        model = LabelSmoothingPlusPlusModel(
            model,
            settings.num_classes,
            settings.value,
            # C's weight decay is the convolutions' l2 (assumption #20)
            matrix_l2=L2_WEIGHT if settings.weight_decay_on_c else 0.0,
            name="label_smoothing_plus_plus",
        )
        model.compile(
            optimizer=optimizer,
            metrics=[accuracy],
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )
    else:
        model.compile(
            optimizer=optimizer,
            loss=FixedTargetCrossEntropy(settings.method, settings.value),
            metrics=[accuracy],
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
        )
    return model


def validation_loss(settings: RunSettings | dict, model, logits, labels) -> float:
    """The method's loss (without weight decay) of ``logits`` against ``labels``."""
    settings = RunSettings.from_dict(settings)
    import keras

    from smoothbench.train import losses

    if settings.method == "lspp":
        network, matrix = losses.label_smoothing_plus_plus_terms(
            labels, logits, model.target_matrix.logits, settings.value
        )
        values = (network + matrix) / 2.0
    else:
        targets = losses.fixed_targets(
            labels, settings.num_classes, settings.method, settings.value
        )
        values = losses.target_cross_entropy(targets, logits)
    return float(np.mean(keras.ops.convert_to_numpy(values)))


def build_for_training(
    settings: RunSettings,
    mean,
    precision: str,
    jit_compile: bool,
    steps_per_execution: int = 1,
):
    """(classifier, model, optimizer) of a run, seeded, compiled and with the
    optimizer's variables built, as every training job (and every measurement of
    :mod:`smoothbench.tools.tune_candidates`) starts."""
    import keras

    backends.apply_precision(precision)  # before any layer is built
    keras.utils.set_random_seed(settings.seed)
    classifier, model = build_model(settings, mean)
    optimizer = keras.optimizers.Adam(learning_rate=settings.learning_rate)
    model = compile_for_method(
        model,
        settings,
        optimizer,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    # Under mixed_float16 model.optimizer wraps `optimizer` in a loss scale, whose variables
    # the checkpoint holds beside `optimizer`'s (checkpoint.loss_scale_variables). A run
    # resumes only under the precision it began with: computation.reconcile stops a
    # resume that would switch it (or any other computation key) before training.
    model.optimizer.build(model.trainable_variables)
    return classifier, model, optimizer
