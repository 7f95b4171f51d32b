"""Load, validate and resolve a smoothbench config into a :class:`Study`.

Validation happens in two layers, both before Snakemake plans a single job:

1. the JSON schema (``workflow/schemas/config.schema.yaml``): types, ranges,
   unknown keys (typos), with every default filled in;
2. the facts the schema cannot express: the dataset exists, each gamma lies in
   (1/K, 1] for that dataset's K, depths fit the ResNet family, the schedule is
   increasing, each method names experiments of the study and valid values.

Every error names the config key at fault, e.g. ``experiments.svhn.gammas[0]``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from smoothbench.acceleration import AccelerationError, resolve_jit_compile
from smoothbench.errors import SmoothbenchError
from smoothbench.registry import DatasetSpec, UnknownDatasetError, get_dataset
from smoothbench.shapes import FIXED_POOL_SIZE, final_map_size

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPOSITORY_ROOT / "workflow" / "schemas" / "config.schema.yaml"
# scikit-learn's load_digits(): 1,797 images of 10 classes (174 to 183 each), which
# prepare._digits_splits splits stratified with data.digits_validation_fraction.
DIGITS_IMAGES = 1797


def _is_integer(checker, instance) -> bool:
    """JSON Schema's draft 2020-12 "integer" also takes 3.0; a config integer must be an
    int (not a bool), since epochs: 3.0 would fail inside the job and seeds: [1.0] would
    name paths seed~1.0."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker, instance) -> bool:
    """A finite int or float, not a bool: YAML's .nan passes every minimum and maximum
    (each comparison with NaN is false), so learning_rate: .nan would reach the job."""
    return (
        isinstance(instance, (int, float))
        and not isinstance(instance, bool)
        and math.isfinite(instance)
    )


# "boolean" already takes only true and false (1 is no boolean).
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}
    ),
)


class ConfigError(SmoothbenchError, ValueError):
    """A config value that cannot run; the message names the key."""


def format_key(path) -> str:
    """``["experiments", "svhn", "gammas", 0]`` -> ``experiments.svhn.gammas[0]``."""
    text = ""
    for part in path:
        text += (
            f"[{part}]"
            if isinstance(part, int)
            else (f".{part}" if text else str(part))
        )
    return text or "<top level>"


def load_schema(schema_path: Path | str = SCHEMA_PATH) -> dict:
    with open(schema_path) as handle:
        return yaml.safe_load(handle)


def _resolve(schema: dict, root: dict) -> dict:
    """Merge a ``$ref`` target with its sibling keywords (draft 2020-12 semantics)."""
    while "$ref" in schema:
        reference = schema["$ref"]
        target = root
        for part in reference.lstrip("#/").split("/"):
            target = target[part]
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        schema = {**target, **siblings}
    return schema


def fill_defaults(instance: dict, schema: dict, root: dict | None = None) -> dict:
    """Fill schema defaults for missing keys, recursing into named properties only.

    Maps keyed by user names (``experiments``, ``source_dirs``, ...) are left as
    written, so an experiment inherits from ``protocol`` instead of from the
    schema's defaults.
    """
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    for key, subschema in schema.get("properties", {}).items():
        subschema = _resolve(subschema, root)
        if key not in instance and "default" in subschema:
            instance[key] = copy.deepcopy(subschema["default"])
        if isinstance(instance.get(key), dict):
            fill_defaults(instance[key], subschema, root)
    return instance


def _same_value(one, two) -> bool:
    """JSON equality: 1 and 1.0 are one number, true is not 1."""
    return isinstance(one, bool) == isinstance(two, bool) and one == two


def _alternative(branch: dict) -> str:
    if "const" in branch:
        return repr(branch["const"])
    if branch.get("type") == "array":
        kind = (branch.get("items") or {}).get("type")
        return f"a list of {kind}s" if isinstance(kind, str) else "a list"
    return (
        f"a {branch['type']}"
        if isinstance(branch.get("type"), str)
        else "the other form"
    )


def _branch_errors(error: jsonschema.ValidationError) -> list:
    """Of a failed ``oneOf``, the errors of the one alternative whose type the value has
    (a list for ``gammas: []``), so the message says what is wrong with the list."""
    matching = [
        index
        for index, branch in enumerate(error.validator_value)
        if isinstance(branch.get("type"), str)
        and Validator.TYPE_CHECKER.is_type(error.instance, branch["type"])
    ]
    if len(matching) != 1:
        return []
    return [
        sub
        for sub in error.context
        if sub.relative_schema_path and sub.relative_schema_path[0] == matching[0]
    ]


def _describe(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    key = format_key(path)
    if error.validator == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        messages = []
        for name in sorted(set(error.instance) - set(known)):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(known)
            messages.append(
                f"config key {format_key(path + [name])!r} is not a known key{hint}; "
                f"allowed here: {allowed}"
            )
        return "\n".join(messages)
    if error.validator == "oneOf":
        chosen = _branch_errors(error)
        if chosen:
            return "\n".join(dict.fromkeys(_describe(sub) for sub in chosen))
        alternatives = [_alternative(branch) for branch in error.validator_value]
        either = (
            " nor ".join(alternatives)
            if len(alternatives) == 2
            else "any of " + ", ".join(alternatives)
        )
        return f"config key {key!r}: {error.instance!r} is neither {either}"
    if error.validator == "uniqueItems":
        items = list(error.instance)
        for later, value in enumerate(items):
            for earlier in range(later):
                if _same_value(items[earlier], value):
                    return (
                        f"config key {key!r}: lists one value twice ({format_key(path + [earlier])} = "
                        f"{items[earlier]!r} and {format_key(path + [later])} = {value!r}); list each value once"
                    )
    if error.validator == "minItems" and not error.instance:
        parent = error.parent
        consts = (
            [branch["const"] for branch in parent.validator_value if "const" in branch]
            if parent is not None
            else []
        )
        instead = "".join(f", or write {const!r}" for const in consts)
        return (
            f"config key {key!r}: the list is empty; list at least one value{instead}"
        )
    if error.validator == "type" and error.validator_value in ("integer", "number"):
        wanted = "an integer" if error.validator_value == "integer" else "a number"
        if isinstance(error.instance, bool):
            return f"config key {key!r}: {error.instance!r} is a boolean, not {wanted}"
        if isinstance(error.instance, float) and not math.isfinite(error.instance):
            return f"config key {key!r}: {error.instance!r} is not a finite number"
        if isinstance(error.instance, float) and error.validator_value == "integer":
            hint = (
                f" (write {int(error.instance)}, without a decimal point)"
                if error.instance.is_integer()
                else ""
            )
            return f"config key {key!r}: {error.instance!r} is not an integer{hint}"
    return f"config key {key!r}: {error.message}"


def validate_config(config: dict, schema_path: Path | str = SCHEMA_PATH) -> dict:
    """Return a deep copy of ``config`` with defaults filled, or raise ConfigError."""
    if not isinstance(config, dict):
        raise ConfigError(
            f"the config must be a mapping of keys, got {type(config).__name__}"
        )
    schema = load_schema(schema_path)
    filled = fill_defaults(copy.deepcopy(config), schema)
    validator = Validator(schema)
    errors = sorted(
        validator.iter_errors(filled),
        key=lambda e: (list(map(str, e.absolute_path)), e.message),
    )
    if errors:
        raise ConfigError(
            "invalid config:\n  " + "\n  ".join(_describe(e) for e in errors)
        )
    return filled


def gamma_grid(
    num_classes: int,
    denominator: int = 10,
    min_numerator: int = 1,
    max_numerator: int = 10,
) -> list[float]:
    """The paper's grid: k / denominator, descending, kept where gamma > 1/K.

    The comparison is done in integers (k * K > denominator), so no floating-point
    accumulation decides whether a value is in the grid.
    """
    numerators = range(max_numerator, min_numerator - 1, -1)
    return [
        k / denominator
        for k in numerators
        if k <= denominator and k * num_classes > denominator
    ]


def format_gamma(gamma: float) -> str:
    """Path-safe decimal text with at least one decimal: 0.9 -> '0.9', 1 -> '1.0', 1e-05 -> '0.00001'."""
    text = format(Decimal(repr(float(gamma))), "f")
    if "." not in text:
        text += ".0"
    return text


def canonical(value):
    """``value`` with every mapping's keys sorted, recursively.

    Snakemake decides whether params changed by comparing their text, so the order in
    which a YAML file lists keys must not leak into them: reordering a config would
    otherwise redo every job.
    """
    return json.loads(json.dumps(value, sort_keys=True))


def depth_is_valid(model: str, depth: int) -> bool:
    step = 6 if model == "resnet_v1" else 9
    return depth >= step + 2 and (depth - 2) % step == 0


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
        """The gamma whose path text (:func:`format_gamma`) is ``text``."""
        return self.value_for("gamma", text)

    def value_for(self, method: str, text: str) -> float:
        """The value of ``method`` whose path text (:func:`format_gamma`) is ``text``."""
        if method not in self.methods:
            on = ", ".join(self.methods) or "none"
            raise ConfigError(
                f"experiment {self.name!r} does not train method {method!r} (config key 'methods'; it trains: {on})"
            )
        for value in self.methods[method]:
            if format_gamma(value) == text:
                return value
        known = ", ".join(format_gamma(value) for value in self.methods[method])
        raise ConfigError(
            f"experiment {self.name!r} has no {method} {text!r} in its config (it has {known})"
        )


METHODS = ("gamma", "alpha", "lspp")


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: an experiment, a method at one value (gamma, or alpha), a seed."""

    experiment: str
    value: float
    seed: int
    method: str = "gamma"

    @property
    def value_text(self) -> str:
        return format_gamma(self.value)

    @property
    def gamma_text(self) -> str:
        return self.value_text

    @property
    def gamma(self) -> float:
        if self.method != "gamma":
            raise AttributeError(f"a {self.method} run has no gamma")
        return self.value

    def folder(self, runs_root: str = "results/runs") -> str:
        """The run's folder in the sweep's path grammar: ``{root}/{experiment}/{method}~{value}/seed~{seed}``."""
        return f"{runs_root}/{self.experiment}/{self.method}~{self.value_text}/seed~{self.seed}"


@dataclasses.dataclass
class Study:
    """A validated config: experiments resolved against the protocol and registry."""

    config: dict
    experiments: dict[str, Experiment]

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
        spec = get_dataset(dataset)
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
        spec = get_dataset(dataset)
        settings = {
            "dataset": dataset,
            "tfds_data_dir": os.path.expanduser(data_dir) if data_dir else None,
            "source_dir": data["source_dirs"].get(dataset),
            "splits": self.splits(dataset),
            "mock": data["mock"],
        }
        if spec.is_decathlon:
            settings["image_size"] = data["image_size"]
            settings["square_method"] = data["square_method"]
        if spec.source == "sklearn":
            settings["validation_fraction"] = data["digits_validation_fraction"]
        return canonical(settings)

    def download_settings(self, dataset: str) -> dict[str, Any]:
        """The part of :meth:`data_settings` that the download result depends on."""
        settings = self.data_settings(dataset)
        return {
            key: settings[key]
            for key in ("dataset", "tfds_data_dir", "source_dir", "mock")
        }

    def train_settings(
        self, experiment: str, method: str, value_text: str, seed: int
    ) -> dict[str, Any]:
        """What one training run's result depends on: the protocol, the method and its
        value (gamma or alpha), and the seed.

        Snakemake reruns a job when these change; how the job runs (devices, threads,
        evaluation batch size) is in :meth:`compute_settings` instead.
        """
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
        return canonical(
            {
                "experiment": chosen.name,
                "dataset": chosen.dataset.name,
                "num_classes": chosen.dataset.num_classes,
                "image_shape": list(chosen.image_shape),
                "model": chosen.model,
                "depth": chosen.depth,
                "pooling": chosen.pooling,
                "min_image_size": chosen.min_image_size,
                "epochs": chosen.epochs,
                "batch_size": chosen.batch_size,
                "optimizer": copy.deepcopy(chosen.optimizer),
                "augmentation": copy.deepcopy(chosen.augmentation),
                "mean_subtraction": chosen.mean_subtraction,
                "method": method,
                "value": chosen.value_for(method, value_text),
                "seed": seed,
            }
        )

    def compute_settings(self) -> dict[str, Any]:
        """How training jobs run; nothing here changes a result."""
        return copy.deepcopy(self.config["compute"])

    def train_resources(self, experiment: str, attempt: int = 1) -> dict[str, int]:
        """``gpu``, ``mem_mb`` and ``runtime`` (minutes) for one experiment's train jobs,
        at Snakemake's ``attempt`` (1 for the first submission): with
        ``compute.runtime_grows_with_attempt`` attempt n asks for n times the runtime."""
        compute = self.config["compute"]
        own = compute["experiments"].get(experiment, {})
        runtime = own.get("runtime_minutes", compute["runtime_minutes"])
        if compute["runtime_grows_with_attempt"]:
            runtime *= max(1, attempt)
        return {
            "gpu": compute["gpus_per_job"],
            "mem_mb": own.get("mem_mb", compute["mem_mb"]),
            "runtime": runtime,
        }

    def network_settings(self) -> dict[str, Any]:
        """Whether and how long the download step may try the network."""
        data = self.config["data"]
        return {
            "download": data["download"],
            "network_timeout_seconds": data["network_timeout_seconds"],
        }


def _check_experiment(name: str, merged: dict, config: dict) -> Experiment:
    key = f"experiments.{name}"
    dataset_name = merged.get("dataset", name)
    try:
        spec = get_dataset(dataset_name)
    except UnknownDatasetError as error:
        where = f"{key}.dataset" if "dataset" in merged else key
        raise ConfigError(f"config key {where!r}: {error.args[0]}") from None
    if not depth_is_valid(merged["model"], merged["depth"]):
        rule = (
            "6n+2 (20, 32, 44, 56, ...)"
            if merged["model"] == "resnet_v1"
            else "9n+2 (29, 56, 83, 110, ...)"
        )
        source = key if "depth" in (config["experiments"][name] or {}) else "protocol"
        raise ConfigError(
            f"config key '{source}.depth': {merged['depth']} is not a {merged['model']} depth; use {rule}"
        )
    schedule = merged["optimizer"]["schedule"]
    boundaries = [step["after_epoch"] for step in schedule]
    if boundaries != sorted(set(boundaries)):
        raise ConfigError(
            f"config key '{key}.optimizer.schedule': after_epoch values must increase strictly, got {boundaries}"
        )
    image_shape = spec.prepared_shape(config["data"]["image_size"])
    if merged["pooling"] == "fixed_8x8":
        side = max(min(image_shape[:2]), merged["min_image_size"])
        if final_map_size(side) < FIXED_POOL_SIZE:
            source = (
                key if "pooling" in (config["experiments"][name] or {}) else "protocol"
            )
            raise ConfigError(
                f"config key '{source}.pooling': fixed_8x8 needs inputs of at least 29 pixels, but {spec.name} "
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
            if not (gamma * K > 1 and gamma <= 1):
                raise ConfigError(
                    f"config key '{key}.gammas[{index}]': gamma = {gamma} must lie in (1/K, 1] = "
                    f"({1 / K:.4g}, 1] for dataset {spec.name} (K={K})"
                )
            gammas.append(float(gamma))
        texts = [format_gamma(g) for g in gammas]
        if len(set(texts)) != len(texts):
            raise ConfigError(
                f"config key '{key}.gammas': two gammas share one output path: {texts}"
            )
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
        image_shape=tuple(image_shape),
        gammas=tuple(gammas),
    )


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_study(config: dict, schema_path: Path | str = SCHEMA_PATH) -> Study:
    """Validate ``config`` (a dict as Snakemake loads it) and resolve its experiments."""
    filled = validate_config(config, schema_path)
    if not filled["experiments"]:
        raise ConfigError("config key 'experiments': the study lists no experiment")
    experiments = {}
    for name, override in filled["experiments"].items():
        merged = _merge(filled["protocol"], override or {})
        experiments[name] = _check_experiment(name, merged, filled)
    _resolve_methods(filled, experiments)
    for dataset in filled["data"]["source_dirs"]:
        spec = _check_known(dataset, "data.source_dirs")
        if spec.source != "tfds":
            raise ConfigError(
                f"config key 'data.source_dirs.{dataset}': {dataset} is bundled with scikit-learn and reads no "
                "source files, so this key would be ignored; remove it"
            )
    for dataset in filled["data"]["splits"]:
        spec = _check_known(dataset, "data.splits")
        if spec.source != "tfds":
            raise ConfigError(
                f"config key 'data.splits.{dataset}': {dataset} comes from scikit-learn and has no TFDS splits, "
                "so this key would be ignored; its split is set by 'data.digits_validation_fraction'"
            )
    _check_digits_fraction(filled["data"]["digits_validation_fraction"])
    for name in filled["compute"]["experiments"]:
        if name not in experiments:
            raise ConfigError(
                f"config key 'compute.experiments.{name}': no experiment of that name "
                f"(the study has {', '.join(experiments)})"
            )
    _check_compute(filled["compute"])
    return Study(config=filled, experiments=experiments)


def _check_compute(compute: dict) -> None:
    """Refuse, before any job starts, compute choices that cannot run together."""
    backend = (
        compute["backend"]
        if compute["backend"] != "auto"
        else os.environ.get("KERAS_BACKEND", "tensorflow")
    )
    try:  # the job's own resolution, run early: the device does not matter for what it refuses
        resolve_jit_compile(
            compute["jit_compile"],
            backend,
            has_gpu=False,
            deterministic=compute["deterministic"],
        )
    except AccelerationError as error:
        raise ConfigError(str(error)) from None


def _resolve_methods(config: dict, experiments: dict[str, Experiment]) -> None:
    """Fill each experiment's ``methods`` from config key ``methods``, checking names and values."""
    chosen = {name: {} for name in experiments}
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
            low_ok = value >= 0 if method == "alpha" else value > 0
            if not (low_ok and value < 1):
                interval = "[0, 1)" if method == "alpha" else "(0, 1)"
                raise ConfigError(
                    f"config key 'methods.{method}.values[{index}]': alpha = {value} must lie in {interval}"
                )
            values.append(float(value))
        texts = [format_gamma(value) for value in values]
        if len(set(texts)) != len(texts):
            raise ConfigError(
                f"config key 'methods.{method}.values': two values share one output path: {texts}"
            )
        for name in names:
            chosen[name][method] = tuple(values)
    for name, methods in chosen.items():
        if not methods:
            raise ConfigError(
                f"config key 'methods': experiment {name!r} trains no method; list it under a method's "
                "'experiments' (or remove it from 'experiments')"
            )
        experiments[name] = dataclasses.replace(experiments[name], methods=methods)


def _check_known(dataset: str, key: str) -> DatasetSpec:
    try:
        return get_dataset(dataset)
    except UnknownDatasetError as error:
        raise ConfigError(f"config key '{key}.{dataset}': {error.args[0]}") from None


def _check_digits_fraction(fraction: float) -> None:
    """Refuse a digits split that leaves a class without a validation or a training image.

    prepare._digits_splits calls scikit-learn's stratified train_test_split with
    test_size=fraction: it holds out ceil(fraction x 1797) images and refuses fewer than
    10 (the number of classes) on either side. From 10 to 1787 held out, every class has
    at least one image on each side (digits' classes hold 174 to 183 images each;
    checked for every count with scikit-learn 1.9), so the bound is exactly
    9/1797 < fraction <= 1787/1797.
    """
    classes = get_dataset("digits").num_classes
    held_out = math.ceil(fraction * DIGITS_IMAGES)  # as scikit-learn counts it
    if classes <= held_out <= DIGITS_IMAGES - classes:
        return
    low, high = classes - 1, DIGITS_IMAGES - classes
    raise ConfigError(
        f"config key 'data.digits_validation_fraction': {fraction} holds out {held_out} of the {DIGITS_IMAGES} "
        f"digits images for validation and leaves {DIGITS_IMAGES - held_out} for training, but the stratified "
        f"split needs at least one image of each of the {classes} classes on both sides; use a fraction from "
        f"{math.ceil(low / DIGITS_IMAGES * 1e5) / 1e5} to {math.floor(high / DIGITS_IMAGES * 1e5) / 1e5} "
        f"(exactly: above {low}/{DIGITS_IMAGES}, at most {high}/{DIGITS_IMAGES})"
    )


def load_study_file(path: Path | str) -> Study:
    """Read a YAML config file and resolve it (for scripts and tests outside Snakemake)."""
    with open(path) as handle:
        return load_study(yaml.safe_load(handle) or {})
