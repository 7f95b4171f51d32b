"""The study model: a validated config resolved into experiments, runs and each
run's settings.

:func:`load_study` validates a config (:mod:`smoothbench.config`: the JSON schema,
defaults filled) and then checks the facts the schema cannot express: the dataset
exists, each gamma lies in (1/K, 1] for that dataset's K (:mod:`smoothbench.methods`
owns the rule), depths fit the ResNet family, the schedule is increasing, each method
names experiments of the study and valid values. Every error names the config key at
fault, e.g. ``experiments.svhn.gammas[0]``.

A run's settings (what its result depends on) are a frozen :class:`RunSettings`;
Snakemake receives them as a dict (``params``) and the job turns them back.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, cast

from smoothbench import run_record
from smoothbench.compute import decisions
from smoothbench.compute.backends import AccelerationError, resolve_jit_compile
from smoothbench.config import (
    SCHEMA_PATH,
    ConfigError,
    merge_layers,
    read_config_files,
    validate_config,
)
from smoothbench.data import image_folder
from smoothbench.data.catalog import check_data_section, dataset_specs
from smoothbench.data.download import mock_data
from smoothbench.data.registry import (
    DATASETS,
    DatasetSpec,
    unknown_dataset,
)
from smoothbench.methods import (
    METHODS,
    gamma_grid,
    gamma_in_range,
    gamma_range_text,
    value_in_range,
    value_range_text,
)
from smoothbench.models.shapes import FIXED_POOL_SIZE, depth_is_valid, final_map_size
from smoothbench.run_record import format_value
from smoothbench.settings import ComputeSettings, Experiment, RunSettings, canonical


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: an experiment, a method at one value (gamma, or alpha), a seed."""

    experiment: str
    value: float
    seed: int
    method: str = "gamma"

    @property
    def value_text(self) -> str:
        return format_value(self.value)

    @property
    def gamma_text(self) -> str:
        return self.value_text

    @property
    def gamma(self) -> float:
        if self.method != "gamma":
            raise AttributeError(f"a {self.method} run has no gamma")
        return self.value

    def folder(self, runs_root: str) -> str:
        """The run's folder (:func:`smoothbench.run_record.run_folder`)."""
        return run_record.run_folder(
            runs_root, self.experiment, self.method, self.value, self.seed
        )

    def files(self, runs_root: str) -> dict[str, str]:
        """kind -> path of the run's outputs (:func:`smoothbench.run_record.output_files`)."""
        return run_record.output_files(self.folder(runs_root), self.method)


@dataclasses.dataclass
class Study:
    """A validated config: experiments resolved against the protocol and registry."""

    config: dict
    experiments: dict[str, Experiment]
    # every dataset the study can name: the registry's and its own (config key datasets)
    dataset_specs: dict[str, DatasetSpec] = dataclasses.field(
        default_factory=lambda: dict(DATASETS)
    )

    def dataset(self, name: str) -> DatasetSpec:
        """The entry of dataset ``name``, the study's own or the registry's."""
        try:
            return self.dataset_specs[name]
        except KeyError:
            raise unknown_dataset(name, self.dataset_specs) from None

    @property
    def results_folder(self) -> str:
        """Where the study writes everything (config key results_folder)."""
        return os.path.normpath(self.config["results_folder"])

    @property
    def runs_folder(self) -> str:
        """The root of the run path grammar (:mod:`smoothbench.run_record`)."""
        return f"{self.results_folder}/runs"

    @property
    def logs_folder(self) -> str:
        return f"{self.results_folder}/logs"

    @property
    def prepared_folder(self) -> str:
        """Where each dataset's prepared arrays go, one folder per dataset."""
        return f"{self.results_folder}/prepared"

    @property
    def datasets(self) -> list[str]:
        """Datasets the experiments need, in config order, each once."""
        names: list[str] = []
        for experiment in self.experiments.values():
            if experiment.dataset.name not in names:
                names.append(experiment.dataset.name)
        return names

    @property
    def seeds(self) -> list[int]:
        return list(self.config["seeds"])

    def runs(self, method: str | None = None) -> list[Run]:
        """Every run of the study (of ``method`` only, when given)."""
        return [
            Run(name, value, seed, chosen)
            for name, experiment in self.experiments.items()
            for chosen, values in experiment.methods.items()
            if method in (None, chosen)
            for value in values
            for seed in self.seeds
        ]

    def splits(self, dataset: str) -> dict[str, str]:
        """The TFDS split names read for training and validation of ``dataset``."""
        spec = self.dataset(dataset)
        chosen = {"train": spec.train_split, "validation": spec.validation_split}
        chosen.update(self.config["data"]["splits"].get(dataset, {}))
        return chosen

    def data_settings(self, dataset: str) -> dict[str, Any]:
        """What the prepared arrays of ``dataset`` depend on.

        Snakemake reruns a job when these change, so nothing that leaves the result
        unchanged belongs here (whether the network may be used, and for how long:
        see :meth:`network_settings`).
        """
        data = self.config["data"]
        data_dir = data["tfds_data_dir"]
        spec = self.dataset(dataset)
        settings = {
            "dataset": dataset,
            "tfds_data_dir": os.path.expanduser(data_dir) if data_dir else None,
            "source_dir": data["source_dirs"].get(dataset),
            "splits": self.splits(dataset),
            "mock": mock_data(),
        }
        if spec.own:  # the study's own definition travels with its settings
            settings["definition"] = spec.definition()
        if spec.source == "folder":  # read from the folder: no TFDS, no mock data
            for key in ("tfds_data_dir", "source_dir", "mock"):
                del settings[key]
        if spec.native_shape is None:
            settings["image_size"] = spec.image_size or data["image_size"]
            settings["square_method"] = data["square_method"]
        if spec.source == "sklearn":
            settings["validation_fraction"] = data["digits_validation_fraction"]
        return canonical(settings)

    def download_settings(self, dataset: str) -> dict[str, Any]:
        """The part of :meth:`data_settings` that the download result depends on."""
        settings = self.data_settings(dataset)
        return {
            key: settings[key]
            for key in ("dataset", "tfds_data_dir", "source_dir", "mock", "definition")
            if key in settings
        }

    def source_files(self, dataset: str) -> list[str]:
        """The files a study's image folder is read from (the download rule's inputs:
        a changed file records and prepares that dataset again); none for the others."""
        spec = self.dataset(dataset)
        if spec.source != "folder":
            return []
        assert spec.folder is not None  # a dataset of source "folder" names its folder
        layout = image_folder.read_layout(
            spec.folder, f"datasets.{dataset}", spec.validation_fraction
        )
        return [str(layout.root / relative) for relative, _ in layout.files()]

    def train_settings(
        self, experiment: str, method: str, value_text: str, seed: int
    ) -> dict[str, Any]:
        """What one training run's result depends on: the protocol, the method and its
        value (gamma or alpha), the seed, and for lspp ``weight_decay_on_c``.

        Snakemake reruns a job when these change; how the job runs (devices, threads,
        evaluation batch size) is in :meth:`compute_settings` instead.
        """
        return self.run_settings(experiment, method, value_text, seed).as_dict()

    def run_settings(
        self, experiment: str, method: str, value_text: str, seed: int
    ) -> RunSettings:
        """:meth:`train_settings` as a frozen :class:`RunSettings`."""
        if experiment not in self.experiments:
            raise ConfigError(
                f"no experiment {experiment!r} in config key 'experiments'"
            )
        chosen = self.experiments[experiment]
        seed = int(seed)
        if seed not in self.seeds:
            raise ConfigError(
                f"seed {seed} is not in config key 'seeds' ({self.seeds})"
            )
        return RunSettings(
            experiment=chosen.name,
            dataset=chosen.dataset.name,
            num_classes=chosen.dataset.num_classes,
            image_shape=tuple(chosen.image_shape),
            model=chosen.model,
            depth=chosen.depth,
            pooling=chosen.pooling,
            min_image_size=chosen.min_image_size,
            epochs=chosen.epochs,
            batch_size=chosen.batch_size,
            optimizer=canonical(chosen.optimizer),
            augmentation=canonical(chosen.augmentation),
            mean_subtraction=chosen.mean_subtraction,
            method=method,
            value=chosen.value_for(method, value_text),
            seed=seed,
            weight_decay_on_c=(
                self.config["methods"]["lspp"]["weight_decay_on_c"]
                if method == "lspp"
                else None
            ),
        )

    def compute_settings(self, experiment: str | None = None) -> ComputeSettings:
        """How training jobs (of ``experiment``, with its own keys of
        ``compute.experiments``) run; nothing here changes a result except the
        computation keys, resolved from it alone (:mod:`smoothbench.compute.decisions`)."""
        if experiment is not None and experiment not in self.experiments:
            raise ConfigError(
                f"no experiment {experiment!r} in config key 'experiments'"
            )
        return ComputeSettings.from_config(self.config["compute"], experiment)

    def train_resources(self, experiment: str, attempt: int = 1) -> dict[str, int]:
        """``gpu``, ``mem_mb`` and ``runtime`` (minutes) for one experiment's train jobs,
        at Snakemake's ``attempt`` (1 for the first submission): with
        ``compute.runtime_grows_with_attempt`` attempt n asks for n times the runtime."""
        compute = self.compute_settings(experiment)
        runtime = compute.runtime_minutes
        if compute.runtime_grows_with_attempt:
            runtime *= max(1, attempt)
        return {
            "gpu": compute.gpus_per_job,
            "mem_mb": compute.mem_mb,
            "runtime": runtime,
        }

    def network_settings(self) -> dict[str, Any]:
        """Whether and how long the download step may try the network."""
        data = self.config["data"]
        return {
            "download": data["download"],
            "network_timeout_seconds": data["network_timeout_seconds"],
        }


def _check_experiment(
    name: str, merged: dict, config: dict, specs: dict[str, DatasetSpec]
) -> Experiment:
    key = f"experiments.{name}"
    written = config["experiments"][name] or {}

    def source(*path: str) -> str:
        """The key the value at ``path`` was written under: the experiment's, or protocol's."""
        layer = written
        for part in path[:-1]:
            layer = layer.get(part) if isinstance(layer, dict) else None
        owner = key if isinstance(layer, dict) and path[-1] in layer else "protocol"
        return ".".join([owner, *path])

    dataset_name = merged.get("dataset", name)
    if dataset_name not in specs:
        where = f"{key}.dataset" if "dataset" in merged else key
        error = unknown_dataset(dataset_name, specs)
        raise ConfigError(f"config key {where!r}: {error.args[0]}")
    spec = specs[dataset_name]
    if not depth_is_valid(merged["model"], merged["depth"]):
        rule = (
            "6n+2 (20, 32, 44, 56, ...)"
            if merged["model"] == "resnet_v1"
            else "9n+2 (29, 56, 83, 110, ...)"
        )
        raise ConfigError(
            f"config key '{source('depth')}': {merged['depth']} is not a {merged['model']} depth; use {rule}"
        )
    schedule = merged["optimizer"]["schedule"]
    boundaries = [step["after_epoch"] for step in schedule]
    if boundaries != sorted(set(boundaries)):
        raise ConfigError(
            f"config key '{source('optimizer', 'schedule')}': after_epoch values must increase strictly, got {boundaries}"
        )
    image_shape = spec.prepared_shape(config["data"]["image_size"])
    if merged["pooling"] == "fixed_8x8":
        side = max(min(image_shape[:2]), merged["min_image_size"])
        if final_map_size(side) < FIXED_POOL_SIZE:
            raise ConfigError(
                f"config key '{source('pooling')}': fixed_8x8 needs inputs of at least 29 pixels, but {spec.name} "
                f"images are {image_shape[0]}x{image_shape[1]} and 'min_image_size' is {merged['min_image_size']}; "
                "set min_image_size to 32 (pads the images) or pooling to global"
            )
    K = spec.num_classes
    if merged["gammas"] == "grid":
        gammas = gamma_grid(K, **config["gamma_grid"])
        if not gammas:
            raise ConfigError(
                f"config key 'gamma_grid': no gamma of the grid lies in (1/K, 1] for {name} (K={K})"
            )
    else:
        gammas = []
        for index, gamma in enumerate(merged["gammas"]):
            if not gamma_in_range(gamma, K):
                raise ConfigError(
                    f"config key '{source('gammas')}[{index}]': gamma = {gamma} must lie in "
                    f"{gamma_range_text(K)} for dataset {spec.name} (K={K})"
                )
            gammas.append(float(gamma))
        _check_one_path_each(source("gammas"), "gammas", gammas)
    return Experiment(
        name=name,
        dataset=spec,
        model=merged["model"],
        depth=merged["depth"],
        epochs=merged["epochs"],
        batch_size=merged["batch_size"],
        optimizer=merged["optimizer"],
        augmentation=merged["augmentation"],
        mean_subtraction=merged["mean_subtraction"],
        pooling=merged["pooling"],
        min_image_size=merged["min_image_size"],
        # prepared_shape's (height, width, channels)
        image_shape=cast(tuple[int, int, int], tuple(image_shape)),
        gammas=tuple(gammas),
    )


def load_study(
    config: dict, schema_path: Path | str | Traversable = SCHEMA_PATH
) -> Study:
    """Validate ``config`` (a dict as Snakemake loads it) and resolve its experiments."""
    filled = validate_config(config, schema_path)
    if not filled["experiments"]:
        raise ConfigError("config key 'experiments': the study lists no experiment")
    specs = dataset_specs(filled)
    experiments = {}
    for name, override in filled["experiments"].items():
        merged = merge_layers(filled["protocol"], override or {})
        experiments[name] = _check_experiment(name, merged, filled, specs)
    _resolve_methods(filled, experiments)
    check_data_section(filled["data"], specs)
    for name in filled["compute"]["experiments"]:
        if name not in experiments:
            raise ConfigError(
                f"config key 'compute.experiments.{name}': no experiment of that name "
                f"(the study has {', '.join(experiments)})"
            )
    _check_compute(filled["compute"], experiments)
    return Study(config=filled, experiments=experiments, dataset_specs=specs)


def _check_compute(compute: dict, experiments: dict[str, Experiment]) -> None:
    """Refuse, before any job starts, compute choices that cannot run together (the
    study's, and each experiment's with its own keys of compute.experiments)."""
    if compute["runs_per_gpu"] > 1 and compute["gpus_per_job"] != 1:
        raise ConfigError(
            f"config key 'compute.runs_per_gpu': {compute['runs_per_gpu']} jobs sharing a GPU need "
            f"compute.gpus_per_job: 1, not {compute['gpus_per_job']}; set runs_per_gpu to 1 or gpus_per_job to 1"
        )
    for name in [None, *experiments]:
        settings = ComputeSettings.from_config(compute, name)
        try:  # the job's own resolution, run early: the device does not matter for what it refuses
            backend = decisions.choose_backend(settings)
            resolve_jit_compile(
                settings.jit_compile,
                backend,
                has_gpu=False,
                deterministic=settings.deterministic,
            )
        except AccelerationError as error:
            where = (
                ""
                if name is None
                else f" (experiment {name}, compute.experiments.{name})"
            )
            raise ConfigError(f"{error}{where}") from None
    if compute["tensorboard"] and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "config key 'compute.tensorboard': true needs the tensorboard package, which is not "
            "installed; pip install -e '.[tensorboard]' (or set it to false)"
        )


def _resolve_methods(config: dict, experiments: dict[str, Experiment]) -> None:
    """Fill each experiment's ``methods`` from config key ``methods``, checking names and values."""
    chosen: dict[str, dict[str, tuple[float, ...]]] = {name: {} for name in experiments}
    for method in METHODS:
        section = config["methods"][method]
        names = (
            list(experiments)
            if section["experiments"] == "all"
            else section["experiments"]
        )
        for index, name in enumerate(names):
            if name not in experiments:
                close = difflib.get_close_matches(name, list(experiments), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"config key 'methods.{method}.experiments[{index}]': no experiment {name!r}{hint}; "
                    f"the study has {', '.join(experiments)}"
                )
        if method == "gamma":
            for name in names:
                chosen[name]["gamma"] = experiments[name].gammas
            continue
        values = []
        for index, value in enumerate(section["values"]):
            if not value_in_range(method, value):
                interval = value_range_text(method)
                raise ConfigError(
                    f"config key 'methods.{method}.values[{index}]': alpha = {value} must lie in {interval}"
                )
            values.append(float(value))
        _check_one_path_each(f"methods.{method}.values", "values", values)
        for name in names:
            chosen[name][method] = tuple(values)
    for name, methods in chosen.items():
        if not methods:
            raise ConfigError(
                f"config key 'methods': experiment {name!r} trains no method; list it under a method's "
                "'experiments' (or remove it from 'experiments')"
            )
        experiments[name] = dataclasses.replace(experiments[name], methods=methods)


def _check_one_path_each(key: str, noun: str, values: list[float]) -> None:
    """Refuse two values of config key ``key`` that would name one run folder."""
    texts = [format_value(value) for value in values]
    if len(set(texts)) != len(texts):
        raise ConfigError(
            f"config key '{key}': two {noun} share one output path: {texts}"
        )


def load_study_file(path: Path | str) -> Study:
    """Read a YAML config file and resolve it (for scripts and tests outside Snakemake)."""
    return load_study_files([path])


def load_study_files(paths: list[Path | str]) -> Study:
    """:func:`read_config_files`, resolved."""
    return load_study(read_config_files(paths))
