"""The typed, frozen settings a job is given: what a run's result depends on
(:class:`RunSettings`), how a training job computes and runs (:class:`ComputeSettings`),
and one experiment of a study (:class:`Experiment`).

Each is made from a validated config (:mod:`smoothbench.config` fills every default
from the schema, the one place defaults live) by :mod:`smoothbench.study`, and travels to
a job as the plain dict of its ``as_dict`` (Snakemake's ``params``) or, for compute, is
read again from the config by the job's adapter.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from smoothbench.config import ConfigError
from smoothbench.data.registry import DatasetSpec
from smoothbench.run_record import format_value


def canonical(value):
    """``value`` with every mapping's keys sorted, recursively.

    Snakemake decides whether params changed by comparing their text, so the order in
    which a YAML file lists keys must not leak into them: reordering a config would
    otherwise redo every job.
    """
    return json.loads(json.dumps(value, sort_keys=True))


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One row of the paper's tables: a dataset trained under one protocol."""

    name: str
    dataset: DatasetSpec
    model: str
    depth: int
    epochs: int
    batch_size: int
    optimizer: dict
    augmentation: dict
    mean_subtraction: bool
    pooling: str
    min_image_size: int
    image_shape: tuple[int, int, int]
    gammas: tuple[float, ...]
    # method -> the values this experiment trains ("gamma" holds ``gammas`` when on)
    methods: dict = dataclasses.field(default_factory=dict)

    @property
    def model_name(self) -> str:
        """``resnet_v1-20``: family and depth, as tables print it."""
        return f"{self.model}-{self.depth}"

    def gamma_for(self, text: str) -> float:
        """The gamma whose path text (:func:`format_value`) is ``text``."""
        return self.value_for("gamma", text)

    def value_for(self, method: str, text: str) -> float:
        """The value of ``method`` whose path text (:func:`format_value`) is ``text``."""
        if method not in self.methods:
            on = ", ".join(self.methods) or "none"
            raise ConfigError(
                f"experiment {self.name!r} does not train method {method!r} (config key 'methods'; it trains: {on})"
            )
        for value in self.methods[method]:
            if format_value(value) == text:
                return value
        known = ", ".join(format_value(value) for value in self.methods[method])
        raise ConfigError(
            f"experiment {self.name!r} has no {method} {text!r} in its config (it has {known})"
        )


# RunSettings fields that belong to one method; None (left out of as_dict) for the others.
_METHOD_SETTINGS = frozenset({"weight_decay_on_c"})


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """What one training run's result depends on: the protocol of its experiment, the
    method and its value, the seed, and the method's own settings. Snakemake passes it
    to the job as the dict of :meth:`as_dict` (its ``params``: a change retrains the
    run); how the job runs (devices, threads) is not here but in ``compute``.

    A method's own setting is None for the runs of every other method and then left out
    of :meth:`as_dict`: adding one to Label Smoothing++ must not change, and so retrain,
    a finished gamma or alpha run."""

    experiment: str
    dataset: str
    num_classes: int
    image_shape: tuple[int, ...]
    model: str  # resnet_v1 or resnet_v2
    depth: int
    pooling: str  # fixed_8x8 or global
    min_image_size: int
    epochs: int
    batch_size: int
    optimizer: Mapping[
        str, Any
    ]  # name, learning_rate, schedule [{after_epoch, factor}]
    augmentation: Mapping[str, Any]  # shift, horizontal_flip
    mean_subtraction: bool
    method: str  # smoothbench.methods.METHODS
    value: float  # gamma, or alpha for alpha and lspp
    seed: int
    # lspp only (config key methods.lspp.weight_decay_on_c): C's logits get the network's l2
    weight_decay_on_c: bool | None = None

    def __post_init__(self):
        lspp = self.method == "lspp"
        if lspp != isinstance(self.weight_decay_on_c, bool):
            wanted = "true or false" if lspp else "absent (None)"
            raise ConfigError(
                f"run settings: weight_decay_on_c must be {wanted} for a {self.method} run, "
                f"got {self.weight_decay_on_c!r}"
            )

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | RunSettings) -> RunSettings:
        """The settings of :meth:`as_dict` (e.g. a job's params) back as RunSettings."""
        if isinstance(settings, RunSettings):
            return settings
        names = {field.name for field in dataclasses.fields(cls)}
        missing = names - _METHOD_SETTINGS - set(settings)
        unknown = set(settings) - names
        if missing or unknown:
            raise ConfigError(
                f"run settings: missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        return cls(**{**settings, "image_shape": tuple(settings["image_shape"])})

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data, keys sorted (what Snakemake compares and metrics.json records),
        without the method settings that are None (those of another method)."""
        return canonical(
            {
                name: value
                for name, value in dataclasses.asdict(self).items()
                if not (name in _METHOD_SETTINGS and value is None)
            }
        )

    @property
    def model_name(self) -> str:
        return f"{self.model}-{self.depth}"

    @property
    def learning_rate(self) -> float:
        return self.optimizer["learning_rate"]

    @property
    def schedule(self) -> list[dict]:
        return self.optimizer["schedule"]


# The compute keys that change how a step is computed (float rounding, kernel order)
# and that smoothbench-tune measures and writes (ComputeSettings.requested).
COMPUTATION_KEYS = ("backend", "precision", "jit_compile", "deterministic")
# Every compute key that changes a run's rounding: the measured ones, TF32 and
# TensorFlow's oneDNN kernels, which no measurement chooses. A run is computed one way
# from its first epoch to its last: each attempt records them, and a resume keeps them
# or stops (smoothbench.compute.decisions).
ROUNDING_KEYS = (*COMPUTATION_KEYS, "tf32", "onednn")


@dataclasses.dataclass(frozen=True)
class ComputeSettings:
    """How a training job runs: config key ``compute`` with every default filled by the
    schema (``src/smoothbench/schemas/config.schema.yaml`` describes each field), the
    experiment's own entry of ``compute.experiments`` applied, and ``gpus_given``, which
    the job's adapter sets. None of it changes a run's numbers except the
    :data:`ROUNDING_KEYS`, which :mod:`smoothbench.compute.decisions` resolves (the same
    config gives the same computation on every machine of one kind); changing any of
    them never retrains a finished run."""

    gpus_per_job: int
    runs_per_gpu: int
    cpu_fallback: bool
    threads_per_job: int
    evaluation_batch_size: int
    backend: str
    precision: str
    jit_compile: bool | str  # true, false or "auto"
    deterministic: bool | str  # true, false or "auto"
    tf32: bool | str  # true, false or "auto"
    onednn: bool | str  # true, false or "auto"
    verify_checksums: bool
    checkpoint_minutes: float
    # training steps per call into the backend: changes no number (only callbacks' pace)
    steps_per_execution: int
    progress_seconds: float
    tensorboard: bool
    mem_mb: int
    runtime_minutes: int
    runtime_grows_with_attempt: bool
    experiments: Mapping[str, Any]
    # the GPUs this job was given, in words (smoothbench.compute.gpu_slots.gpus_given); None: none
    gpus_given: str | None = None

    @classmethod
    def from_config(
        cls, compute: Mapping[str, Any], experiment: str | None = None
    ) -> ComputeSettings:
        """``compute`` (a validated config's, every key present), with ``experiment``'s
        own keys of ``compute.experiments`` in place of the study-wide ones."""
        values = dict(compute)
        if experiment is not None:
            values.update(compute["experiments"].get(experiment, {}))
        names = {field.name for field in dataclasses.fields(cls)}
        missing = names - {"gpus_given"} - set(values)
        unknown = set(values) - names
        if missing or unknown:
            raise ConfigError(
                f"config key 'compute': missing {sorted(missing)}, unknown {sorted(unknown)} "
                "(compute settings are made from a config validated by the schema)"
            )
        return cls(**values)

    def requested(self) -> dict[str, Any]:
        """The :data:`COMPUTATION_KEYS` as the config gives them (auto included)."""
        return {key: getattr(self, key) for key in COMPUTATION_KEYS}
