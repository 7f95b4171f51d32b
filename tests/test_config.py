"""The config: the paper's study as shipped, defaults, and every kind of bad input."""

from __future__ import annotations

import atexit
import copy
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import REPOSITORY

from smoothbench.config import (
    SCHEMA_PATH,
    ConfigError,
    _resolve,
    format_key,
    load_schema,
)
from smoothbench.methods import gamma_grid
from smoothbench.run_record import format_value
from smoothbench.study import RunSettings, load_study, load_study_file


@pytest.fixture(scope="module")
def paper():
    return load_study_file(REPOSITORY / "config.yaml")


def test_shipped_config_is_the_papers_study(paper):
    assert list(paper.experiments) == [
        "aircraft",
        "cifar100",
        "daimlerpedcls",
        "dtd",
        "gtsrb",
        "omniglot",
        "svhn",
        "ucf101",
        "vgg-flowers",
        "imagenet12_a",
        "imagenet12_b",
        "cifar10",
        "mnist",
    ]
    assert paper.datasets == [
        "aircraft",
        "cifar100",
        "daimlerpedcls",
        "dtd",
        "gtsrb",
        "omniglot",
        "svhn",
        "ucf101",
        "vgg-flowers",
        "imagenet12",
        "cifar10",
        "mnist",
    ]
    runs = paper.runs()
    # 48 filled cells in the paper's Table 1 + 60 in Table 2 (the shared reference's
    # "110" miscounts: the seven datasets with K > 10 keep gamma = 0.1).
    assert len(runs) == 108
    assert sum(not run.experiment.startswith("imagenet12") for run in runs) == 102
    assert paper.seeds == [0]


# Which gammas have a number in the paper's Tables 1-2 (the rest print '-').
ALL = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}
PAPER_CELLS = {
    **{
        name: ALL
        for name in [
            "aircraft",
            "cifar100",
            "dtd",
            "gtsrb",
            "omniglot",
            "ucf101",
            "vgg-flowers",
        ]
    },
    **{name: ALL - {0.1} for name in ["svhn", "cifar10", "mnist"]},
    "daimlerpedcls": {0.6, 0.7, 0.8, 0.9, 1.0},
    "imagenet12_a": {0.9, 1.0},
    "imagenet12_b": {0.5, 0.8, 0.9, 1.0},
}


def test_planned_gammas_are_exactly_the_papers_filled_cells(paper):
    assert {
        name: set(experiment.gammas) for name, experiment in paper.experiments.items()
    } == PAPER_CELLS


def test_shipped_protocol_per_experiment(paper):
    mnist, svhn = paper.experiments["mnist"], paper.experiments["svhn"]
    a, b = paper.experiments["imagenet12_a"], paper.experiments["imagenet12_b"]
    assert (mnist.model, mnist.depth, mnist.epochs, mnist.batch_size) == (
        "resnet_v1",
        20,
        200,
        32,
    )
    assert (svhn.model, svhn.depth, svhn.mean_subtraction) == ("resnet_v2", 83, True)
    assert (a.model, a.depth, a.epochs, a.batch_size, a.mean_subtraction) == (
        "resnet_v2",
        83,
        100,
        64,
        False,
    )
    assert (b.model, b.depth, b.epochs, b.batch_size) == ("resnet_v1", 20, 200, 64)
    assert a.gammas == (1.0, 0.9) and b.gammas == (1.0, 0.9, 0.8, 0.5)
    assert a.dataset.name == b.dataset.name == "imagenet12"
    assert svhn.optimizer["schedule"] == [
        {"after_epoch": 80, "factor": 0.1},
        {"after_epoch": 120, "factor": 0.01},
        {"after_epoch": 160, "factor": 0.001},
        {"after_epoch": 180, "factor": 0.0005},
    ]
    assert svhn.augmentation == {"shift": 0.1, "horizontal_flip": True}
    assert paper.splits("mnist") == {"train": "train", "validation": "test"}
    assert paper.splits("dtd") == {"train": "train", "validation": "validation"}


def test_gamma_grid_follows_gamma_greater_than_one_over_k(paper):
    tenths = [k / 10 for k in range(10, 0, -1)]
    # K=47 keeps 0.1, as the paper's table
    assert paper.experiments["dtd"].gammas == tuple(tenths)
    # K=10: 0.1 = 1/K is out
    assert paper.experiments["svhn"].gammas == tuple(tenths[:-1])
    assert paper.experiments["daimlerpedcls"].gammas == (1.0, 0.9, 0.8, 0.7, 0.6)  # K=2
    # built from integers: exactly the floats 3/10 etc., not accumulated sums
    assert gamma_grid(10)[-1] == 0.2 and 0.3 in gamma_grid(10)
    assert gamma_grid(2, denominator=4) == [1.0, 0.75]
    assert gamma_grid(10, min_numerator=6) == [1.0, 0.9, 0.8, 0.7, 0.6]


@pytest.mark.parametrize(
    "gamma, text",
    [
        (0.9, "0.9"),
        (1, "1.0"),
        (1.0, "1.0"),
        (0.95, "0.95"),
        (1e-05, "0.00001"),
        (0.3, "0.3"),
        (3 / 10, "0.3"),
    ],
)
def test_gamma_path_text(gamma, text):
    assert format_value(gamma) == text


def test_defaults_fill_an_almost_empty_config():
    study = load_study({"experiments": {"cifar10": None}})
    experiment = study.experiments["cifar10"]
    assert (
        experiment.model,
        experiment.depth,
        experiment.epochs,
        experiment.batch_size,
    ) == ("resnet_v2", 83, 200, 32)
    assert experiment.optimizer["learning_rate"] == 1e-3
    data = study.config["data"]
    assert (
        data["image_size"] == 72
        and data["square_method"] == "center_crop"
        and data["download"] is True
    )
    assert study.config["seeds"] == [0]


def test_experiment_overrides_merge_into_protocol():
    config = {
        "protocol": {"optimizer": {"schedule": [{"after_epoch": 5, "factor": 0.5}]}},
        "experiments": {"cifar10": {"optimizer": {"learning_rate": 0.01}, "epochs": 7}},
    }
    experiment = load_study(config).experiments["cifar10"]
    assert experiment.optimizer == {
        "name": "adam",
        "learning_rate": 0.01,
        "schedule": [{"after_epoch": 5, "factor": 0.5}],
    }
    assert experiment.epochs == 7


def _error(config) -> str:
    with pytest.raises(ConfigError) as caught:
        load_study(config)
    return str(caught.value)


def test_typo_in_a_key_names_it_and_suggests_the_right_one():
    message = _error({"protocol": {"epoch": 3}, "experiments": {"cifar10": {}}})
    assert (
        "'protocol.epoch' is not a known key" in message
        and "did you mean 'epochs'" in message
    )
    message = _error({"experimens": {}, "experiments": {"cifar10": {}}})
    assert "'experimens'" in message and "did you mean 'experiments'" in message
    message = _error({"experiments": {"cifar10": {"batchsize": 3}}})
    assert "'experiments.cifar10.batchsize'" in message


@pytest.mark.parametrize("epochs", [-1, 0])
def test_non_positive_epochs_are_refused(epochs):
    message = _error({"protocol": {"epochs": epochs}, "experiments": {"cifar10": {}}})
    assert "config key 'protocol.epochs'" in message and "minimum" in message
    message = _error({"experiments": {"mnist": {"epochs": epochs}}})
    assert "config key 'experiments.mnist.epochs'" in message


def test_unknown_dataset_is_named():
    message = _error({"experiments": {"cifar11": {}}})
    assert (
        "config key 'experiments.cifar11'" in message
        and "unknown dataset 'cifar11'" in message
    )
    message = _error({"experiments": {"mine": {"dataset": "imagenet"}}})
    assert (
        "config key 'experiments.mine.dataset'" in message and "imagenet12" in message
    )
    message = _error(
        {
            "data": {"source_dirs": {"fashion-mnist": "/x"}},
            "experiments": {"cifar10": {}},
        }
    )
    assert "config key 'data.source_dirs.fashion-mnist'" in message


@pytest.mark.parametrize(
    "experiment, gammas, index",
    [
        ("svhn", [0.1], 0),
        ("svhn", [1.0, 1.1], 1),
        ("daimlerpedcls", [0.9, 0.5], 1),
        ("cifar100", [0.0], 0),
        ("dtd", [-0.5], 0),
    ],
)
def test_gamma_outside_one_over_k_to_one_is_refused(experiment, gammas, index):
    message = _error({"experiments": {experiment: {"gammas": gammas}}})
    assert (
        f"config key 'experiments.{experiment}.gammas[{index}]'" in message
        and "(1/K, 1]" in message
    )


def test_gamma_equal_to_one_over_k_boundary():
    assert load_study({"experiments": {"dtd": {"gammas": [0.1]}}}).experiments[
        "dtd"
    ].gammas == (0.1,)
    assert "gammas[0]" in _error({"experiments": {"daimlerpedcls": {"gammas": [0.5]}}})


def test_other_semantic_errors_name_their_key():
    assert "'protocol.depth': 21 is not a resnet_v2 depth" in _error(
        {"protocol": {"depth": 21}, "experiments": {"cifar10": {}}}
    )
    assert "'experiments.mnist.depth'" in _error(
        {"experiments": {"mnist": {"model": "resnet_v1", "depth": 83}}}
    )
    message = _error(
        {
            "experiments": {
                "cifar10": {
                    "optimizer": {
                        "schedule": [
                            {"after_epoch": 9, "factor": 0.1},
                            {"after_epoch": 3, "factor": 0.1},
                        ]
                    }
                }
            }
        }
    )
    assert "'experiments.cifar10.optimizer.schedule'" in message
    assert "'experiments.cifar10.gammas'" in _error(
        {"experiments": {"cifar10": {"gammas": "all"}}}
    )
    assert "'data.square_method'" in _error(
        {"data": {"square_method": "pad"}, "experiments": {"cifar10": {}}}
    )
    assert "'seeds'" in _error({"seeds": [], "experiments": {"cifar10": {}}})
    assert "'experiments'" in _error({"experiments": {}})


def test_a_semantic_error_names_the_key_the_value_was_written_under():
    """A value an experiment inherits from protocol is protocol's to fix."""
    unsorted = [{"after_epoch": 9, "factor": 0.1}, {"after_epoch": 3, "factor": 0.1}]
    message = _error(
        {
            "protocol": {"optimizer": {"schedule": unsorted}},
            # another optimizer key of its own: the schedule is still protocol's
            "experiments": {"cifar10": {"optimizer": {"learning_rate": 0.01}}},
        }
    )
    assert "config key 'protocol.optimizer.schedule': after_epoch values" in message
    assert "experiments.cifar10" not in message
    message = _error({"protocol": {"gammas": [0.9, 0.05]}, "experiments": {"svhn": {}}})
    assert "config key 'protocol.gammas[1]': gamma = 0.05 must lie in" in message
    assert "experiments.svhn" not in message
    # set by the experiment: named under the experiment
    message = _error(
        {
            "protocol": {"gammas": [0.9]},
            "experiments": {"svhn": {"gammas": [0.05]}},
        }
    )
    assert "config key 'experiments.svhn.gammas[0]'" in message


def _anchor_bomb(levels: int) -> str:
    """YAML for seeds: 9 lists of 9 lists ... (9**levels zeros once every alias is
    written out) in a few hundred characters: a billion laughs."""
    lines = ["seeds:", "  - &a0 [0, 0, 0, 0, 0, 0, 0, 0, 0]"]
    lines += [
        f"  - &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]"
        for level in range(1, levels + 1)
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.workflow
@pytest.mark.parametrize("where", ["config file", "command line"])
def test_an_anchor_bomb_stops_planning_at_once_naming_its_key(where, tmp_path):
    """Before the bound, jsonschema's error text wrote out 9**8 values for minutes; the
    60 s are a guard only (the refusal takes seconds). On the command line the bomb is
    one string (--config 'protocol={gammas: "..."}'), read as YAML by
    read_typed_strings."""
    from conftest import demo_command

    bomb = _anchor_bomb(8)
    if where == "config file":
        layer = tmp_path / "bomb.yaml"
        layer.write_text(bomb)
        arguments, key = [str(layer)], "seeds"  # layered on the demo
    else:
        items = bomb.removeprefix("seeds:\n  - ").strip().replace("\n  - ", ", ")
        arguments = ["--config", f"protocol={{gammas: '[{items}]'}}"]
        key = "protocol.gammas"
    process = subprocess.run(
        demo_command(tmp_path, *arguments, "--dry-run"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode != 0
    output = process.stdout + process.stderr
    assert (
        f"config key '{key}': the value holds more than 100,000 values once each "
        "YAML alias (*name) is written out" in output
    ), output


def test_a_value_that_holds_itself_or_nests_deep_is_refused_naming_its_key():
    holds_itself = yaml.safe_load("seeds: &s [0, *s]\nexperiments: {digits: {}}")
    assert holds_itself["seeds"][1] is holds_itself["seeds"]
    assert "config key 'seeds': the value is nested more than 32 levels" in _error(
        holds_itself
    )
    deep = [0.9]
    for _ in range(40):
        deep = [deep]
    message = _error({"experiments": {"digits": {"gammas": deep}}})
    assert "config key 'experiments.digits.gammas': the value is nested" in message
    # a study's own size passes (the paper's, with many seeds)
    assert load_study({"seeds": list(range(1000)), "experiments": {"digits": {}}})


def test_validation_does_not_change_the_callers_dict():
    config = {"experiments": {"cifar10": {}}}
    before = copy.deepcopy(config)
    load_study(config)
    assert config == before


def _walk(schema, root, path=""):
    schema = _resolve(schema, root)
    for name, subschema in schema.get("properties", {}).items():
        yield f"{path}{name}", _resolve(subschema, root)
        yield from _walk(subschema, root, f"{path}{name}.")
    for keyword in ("additionalProperties", "items"):
        if isinstance(schema.get(keyword), dict):
            yield from _walk(schema[keyword], root, f"{path}<{keyword}>.")


def test_every_schema_key_has_a_description_and_top_level_keys_defaults():
    schema = load_schema(SCHEMA_PATH)
    keys = list(_walk(schema, schema))
    assert len(keys) > 40
    undocumented = [key for key, subschema in keys if not subschema.get("description")]
    assert undocumented == []
    # Keys outside user-named maps (experiments, splits, ...) all have defaults.
    without_default = [
        key for key, subschema in keys if "<" not in key and "default" not in subschema
    ]
    assert without_default == []


def test_demo_config_is_valid_and_small():
    study = load_study_file(REPOSITORY / "config" / "demo.yaml")
    assert study.datasets == ["digits"]
    assert study.experiments["digits"].gammas == (1.0, 0.9, 0.8, 0.7, 0.6)
    assert study.config["data"]["download"] is False
    with open(REPOSITORY / "config" / "demo.yaml") as handle:
        assert "experiments" in yaml.safe_load(handle)


def test_paper_model_choices_and_compute_estimates(paper):
    for experiment in paper.experiments.values():
        assert experiment.pooling == "fixed_8x8" and experiment.min_image_size == 32
    assert paper.experiments["mnist"].image_shape == (28, 28, 1)
    assert paper.experiments["svhn"].image_shape == (72, 72, 3)
    assert paper.train_resources("imagenet12_a") == {
        "gpu": 1,
        "mem_mb": 32000,
        "runtime": 2880,
    }
    assert paper.train_resources("cifar10") == {
        "gpu": 1,
        "mem_mb": 8000,
        "runtime": 720,
    }
    # a retry resumes: same limit
    assert paper.train_resources("cifar10", attempt=3)["runtime"] == 720
    growing = load_study(
        {
            "compute": {"runtime_minutes": 10, "runtime_grows_with_attempt": True},
            "experiments": {"mnist": {}},
        }
    )
    assert [
        growing.train_resources("mnist", attempt)["runtime"] for attempt in (1, 2, 3)
    ] == [10, 20, 30]
    settings = paper.train_settings("mnist", "gamma", "0.9", 0)
    assert (
        settings["method"] == "gamma"
        and settings["value"] == 0.9
        and settings["model"] == "resnet_v1"
        and settings["depth"] == 20
    )
    assert (
        settings["image_shape"] == [28, 28, 1]
        and settings["epochs"] == 200
        and settings["batch_size"] == 32
    )


def test_fixed_pool_on_images_too_small_names_the_keys():
    message = _error(
        {
            "protocol": {"min_image_size": 0},
            "experiments": {"mnist": {"model": "resnet_v1", "depth": 20}},
        }
    )
    assert (
        "config key 'protocol.pooling': fixed_8x8 needs inputs of at least 29 pixels"
        in message
    )
    assert "mnist images are 28x28" in message and "min_image_size" in message
    # global pooling, or padding to 32, makes the same experiment valid
    load_study(
        {
            "protocol": {"min_image_size": 0, "pooling": "global"},
            "experiments": {"mnist": {}},
        }
    )
    load_study({"experiments": {"mnist": {}}})


def test_compute_estimates_for_an_unknown_experiment_are_refused():
    message = _error(
        {
            "compute": {"experiments": {"svnh": {"mem_mb": 1000}}},
            "experiments": {"svhn": {}},
        }
    )
    assert (
        "config key 'compute.experiments.svnh': no experiment of that name" in message
    )


def test_a_run_outside_the_config_is_refused(paper):
    with pytest.raises(ConfigError, match=r"experiment 'mnist' has no gamma '0.1'"):
        paper.train_settings("mnist", "gamma", "0.1", 0)
    with pytest.raises(ConfigError, match="seed 7 is not in config key 'seeds'"):
        paper.train_settings("mnist", "gamma", "0.9", 7)


def test_the_default_study_trains_only_the_papers_method(paper):
    assert {
        method
        for experiment in paper.experiments.values()
        for method in experiment.methods
    } == {"gamma"}
    assert {run.method for run in paper.runs()} == {"gamma"} and len(
        paper.runs()
    ) == 108


def test_methods_choose_experiments_and_values_and_name_the_culprit():
    study = load_study(
        {
            "methods": {
                "alpha": {"values": [0.1, 0.2], "experiments": ["mnist"]},
                "lspp": {"experiments": "all"},
            },
            "experiments": {"mnist": {}, "cifar10": {}},
        }
    )
    assert study.experiments["mnist"].methods["alpha"] == (0.1, 0.2)
    assert "alpha" not in study.experiments["cifar10"].methods
    # the seed paper's alpha by default
    assert study.experiments["cifar10"].methods["lspp"] == (0.1,)
    folders = {
        run.folder(study.runs_folder) for run in study.runs() if run.method != "gamma"
    }
    assert (
        "results/runs/mnist/alpha~0.2/seed~0" in folders
        and "results/runs/cifar10/lspp~0.1/seed~0" in folders
    )
    settings = study.train_settings("mnist", "alpha", "0.2", 0)
    assert settings["method"] == "alpha" and settings["value"] == 0.2
    with pytest.raises(ConfigError, match="does not train method 'alpha'"):
        study.train_settings("cifar10", "alpha", "0.1", 0)
    message = _error(
        {"methods": {"alpha": {"experiments": ["mnsit"]}}, "experiments": {"mnist": {}}}
    )
    assert (
        "config key 'methods.alpha.experiments[0]': no experiment 'mnsit' (did you mean 'mnist'?)"
        in message
    )
    message = _error(
        {"methods": {"alpha": {"values": [0.1, 1.0]}}, "experiments": {"mnist": {}}}
    )
    assert (
        "config key 'methods.alpha.values[1]': alpha = 1.0 must lie in [0, 1)"
        in message
    )
    message = _error(
        {"methods": {"lspp": {"values": [0.0]}}, "experiments": {"mnist": {}}}
    )
    assert (
        "config key 'methods.lspp.values[0]': alpha = 0.0 must lie in (0, 1)" in message
    )
    message = _error(
        {"methods": {"gamma": {"experiments": []}}, "experiments": {"mnist": {}}}
    )
    assert "experiment 'mnist' trains no method" in message
    assert "methods.lspp.experiments" in _error(
        {"methods": {"lspp": {"experiments": "some"}}, "experiments": {"mnist": {}}}
    )


# ---------------------------------------------------------------- integers, lists, ignored keys


def _typed_keys(schema, root, kind, path=()):
    """(path, merged subschema, the raw schema nodes it came from) of every place the
    schema types as ``kind``; a user-named map (experiments, compute.experiments, ...) is
    entered under the name 'cifar10', a list at [0]."""
    chain = [schema]
    while "$ref" in chain[-1]:
        target = root
        for part in chain[-1]["$ref"].lstrip("#/").split("/"):
            target = target[part]
        chain.append(target)
    schema = _resolve(schema, root)
    if schema.get("type") == kind:
        yield path, schema, {id(node) for node in chain if node.get("type") == kind}
    for name, subschema in schema.get("properties", {}).items():
        yield from _typed_keys(subschema, root, kind, (*path, name))
    if isinstance(schema.get("additionalProperties"), dict):
        name = "mine" if path == ("datasets",) else "cifar10"
        yield from _typed_keys(
            schema["additionalProperties"], root, kind, (*path, name)
        )
    if isinstance(schema.get("items"), dict):
        yield from _typed_keys(schema["items"], root, kind, (*path, 0))
    for branch in schema.get("oneOf", []):
        yield from _typed_keys(branch, root, kind, path)


def _raw_nodes(node, kind):
    if isinstance(node, dict):
        if node.get("type") == kind:
            yield node
        for value in node.values():
            yield from _raw_nodes(value, kind)
    elif isinstance(node, list):
        for value in node:
            yield from _raw_nodes(value, kind)


SCHEMA = load_schema(SCHEMA_PATH)
INTEGER_KEYS = list(_typed_keys(SCHEMA, SCHEMA, "integer"))
NUMBER_KEYS = list(_typed_keys(SCHEMA, SCHEMA, "number"))


@pytest.mark.parametrize(
    "kind, keys, least", [("integer", INTEGER_KEYS, 15), ("number", NUMBER_KEYS, 8)]
)
def test_the_walk_reaches_every_integer_and_number_of_the_schema(kind, keys, least):
    raw = {id(node) for node in _raw_nodes(SCHEMA, kind)}
    # $defs are reached from protocol and experiments
    assert len(raw) >= least and len(keys) > len(raw)
    assert set().union(*(origins for _, _, origins in keys)) == raw
    text = SCHEMA_PATH.read_text()
    assert text.count(f"type: {kind}") == len(raw)  # inline ones ({type: ...}) too


def _with(config: dict, path, value) -> dict:
    """``config`` with ``value`` at ``path``, creating the maps and one-item lists on the way."""
    config = copy.deepcopy(config)
    target = config
    for part, following in zip(path, (*path[1:], None)):
        empty = [] if isinstance(following, int) else {}
        if following is None:
            break
        if isinstance(part, int):
            if len(target) <= part:
                target.append(empty)
            target = target[part]
        else:
            target = target.setdefault(part, empty)
    if isinstance(path[-1], int) and len(target) <= path[-1]:
        target.append(value)
    else:
        target[path[-1]] = value
    return config


def _tiny_image_folder() -> str:
    """Two classes of two 8x8 grey PNGs each, in a folder removed when the tests end."""
    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="smoothbench-config-test-"))
    atexit.register(shutil.rmtree, folder, True)
    for label in ("a", "b"):
        (folder / label).mkdir()
        for index in range(2):
            Image.new("L", (8, 8), 40 * index).save(folder / label / f"{index}.png")
    return str(folder)


# Holds every integer key of INTEGER_KEYS at a valid value (a schedule step, compute
# estimates, a dataset of one's own: a folder, which has the most keys).
VALID = {
    "datasets": {"mine": {"folder": _tiny_image_folder(), "validation_fraction": 0.5}},
    "protocol": {"optimizer": {"schedule": [{"after_epoch": 5, "factor": 0.1}]}},
    "compute": {"experiments": {"cifar10": {"mem_mb": 1000}}},
    "seeds": [0],
    "experiments": {
        "cifar10": {"optimizer": {"schedule": [{"after_epoch": 5, "factor": 0.1}]}}
    },
}
# A valid whole number for each key whose minimum is not one (a depth must fit ResNet v2,
# the grid must keep a gamma above 1/K).
WHOLE = {"depth": 83, "max_numerator": 10}


@pytest.mark.parametrize(
    "path, schema",
    [
        pytest.param(path, schema, id=format_key(path))
        for path, schema, _ in INTEGER_KEYS
    ],
)
def test_every_integer_key_refuses_a_float_or_a_boolean(path, schema):
    load_study(VALID)
    whole = WHOLE.get(path[-1], max(schema.get("minimum", 1), 1))
    message = _error(_with(VALID, path, float(whole)))
    assert (
        f"config key '{format_key(path)}': {float(whole)!r} is not an integer (write {whole}, without a decimal point)"
        in message
    )
    message = _error(_with(VALID, path, True))
    assert (
        f"config key '{format_key(path)}': True is a boolean, not an integer" in message
    )
    load_study(_with(VALID, path, whole))  # the same number as an int is fine


@pytest.mark.parametrize(
    "path", [pytest.param(path, id=format_key(path)) for path, _, _ in NUMBER_KEYS]
)
def test_every_number_key_refuses_nan_infinity_and_booleans(path):
    for value in (math.nan, math.inf):
        assert (
            f"config key '{format_key(path)}': {value!r} is not a finite number"
            in _error(_with(VALID, path, value))
        )
    assert (
        f"config key '{format_key(path)}': True is a boolean, not a number"
        in _error(_with(VALID, path, True))
    )


def test_integers_written_as_floats_are_refused_before_any_job():
    message = _error({"experiments": {"cifar10": {"epochs": 3.0}}})
    assert message == (
        "invalid config:\n  config key 'experiments.cifar10.epochs': 3.0 is not an integer (write 3, without a decimal point)"
    )
    assert "config key 'protocol.depth': 8.0 is not an integer" in _error(
        {"protocol": {"depth": 8.0}, "experiments": {"cifar10": {}}}
    )
    assert "config key 'seeds[0]': 1.0 is not an integer" in _error(
        {"seeds": [1.0], "experiments": {"cifar10": {}}}
    )
    message = _error(
        {"gamma_grid": {"max_numerator": 10.0}, "experiments": {"cifar10": {}}}
    )
    assert "config key 'gamma_grid.max_numerator': 10.0 is not an integer" in message
    assert (
        "'protocol.epochs': 2.5 is not an integer\n"
        in _error({"protocol": {"epochs": 2.5}, "experiments": {"cifar10": {}}}) + "\n"
    )
    assert "config key 'protocol.epochs': True is a boolean" in _error(
        {"protocol": {"epochs": True}, "experiments": {"cifar10": {}}}
    )
    # booleans and numbers stay apart the other way round too
    assert "'data.download': 1 is not of type 'boolean'" in _error(
        {"data": {"download": 1}, "experiments": {"cifar10": {}}}
    )
    message = _error(
        {
            "protocol": {"optimizer": {"learning_rate": True}},
            "experiments": {"cifar10": {}},
        }
    )
    assert (
        "'protocol.optimizer.learning_rate': True is a boolean, not a number" in message
    )
    assert "'compute.jit_compile': 1 is not one of" in _error(
        {"compute": {"jit_compile": 1}, "experiments": {"cifar10": {}}}
    )


@pytest.mark.parametrize(
    "config, key, first, second",
    [
        (
            {"experiments": {"svhn": {"gammas": [0.9, 0.9]}}},
            "experiments.svhn.gammas",
            "0.9",
            "0.9",
        ),
        (
            {"experiments": {"svhn": {"gammas": [1, 1.0]}}},
            "experiments.svhn.gammas",
            "1",
            "1.0",
        ),
        (
            {"protocol": {"gammas": [1.0, 0.8, 1]}, "experiments": {"svhn": {}}},
            "protocol.gammas",
            "1.0",
            "1",
        ),
        (
            {
                "methods": {"alpha": {"values": [0.1, 0.1], "experiments": "all"}},
                "experiments": {"svhn": {}},
            },
            "methods.alpha.values",
            "0.1",
            "0.1",
        ),
        (
            {
                "methods": {"lspp": {"values": [0.2, 0.2], "experiments": "all"}},
                "experiments": {"svhn": {}},
            },
            "methods.lspp.values",
            "0.2",
            "0.2",
        ),
        (
            {
                "methods": {"alpha": {"experiments": ["svhn", "svhn"]}},
                "experiments": {"svhn": {}},
            },
            "methods.alpha.experiments",
            "'svhn'",
            "'svhn'",
        ),
        ({"seeds": [0, 1, 0], "experiments": {"svhn": {}}}, "seeds", "0", "0"),
    ],
    ids=[
        "gammas",
        "gammas-1-and-1.0",
        "protocol-gammas",
        "alpha-values",
        "lspp-values",
        "method-experiments",
        "seeds",
    ],
)
def test_a_value_listed_twice_is_named(config, key, first, second):
    message = _error(config)
    index = 2 if key in ("protocol.gammas", "seeds") else 1
    assert (
        f"config key '{key}': lists one value twice ({key}[0] = {first} and {key}[{index}] = {second}); list each value once"
        in message
    )
    assert "neither" not in message


@pytest.mark.parametrize(
    "config, key, instead",
    [
        (
            {"experiments": {"svhn": {"gammas": []}}},
            "experiments.svhn.gammas",
            ", or write 'grid'",
        ),
        (
            {"protocol": {"gammas": []}, "experiments": {"svhn": {}}},
            "protocol.gammas",
            ", or write 'grid'",
        ),
        (
            {
                "methods": {"alpha": {"values": [], "experiments": "all"}},
                "experiments": {"svhn": {}},
            },
            "methods.alpha.values",
            "",
        ),
        (
            {"methods": {"lspp": {"values": []}}, "experiments": {"svhn": {}}},
            "methods.lspp.values",
            "",
        ),
        ({"seeds": [], "experiments": {"svhn": {}}}, "seeds", ""),
    ],
    ids=["gammas", "protocol-gammas", "alpha-values", "lspp-values", "seeds"],
)
def test_an_empty_list_is_named(config, key, instead):
    assert (
        f"config key '{key}': the list is empty; list at least one value{instead}"
        in _error(config)
    )


def test_a_wrong_value_list_says_what_is_wrong_with_it():
    message = _error({"protocol": {"gammas": [0.9, "a"]}, "experiments": {"svhn": {}}})
    assert "config key 'protocol.gammas[1]': 'a' is not of type 'number'" in message
    assert (
        "'experiments.svhn.gammas': 'all' is neither 'grid' nor a list of numbers"
        in _error({"experiments": {"svhn": {"gammas": "all"}}})
    )
    message = _error(
        {"methods": {"lspp": {"experiments": "some"}}, "experiments": {"svhn": {}}}
    )
    assert (
        "config key 'methods.lspp.experiments': 'some' is neither 'all' nor a list of strings"
        in message
    )
    # [] switches a method off
    load_study({"methods": {"alpha": {"experiments": []}}, "experiments": {"svhn": {}}})


@pytest.mark.parametrize("fraction", [0.0001, 0.005, 9 / 1797, 0.995, 0.99999])
def test_a_digits_fraction_leaving_a_class_out_of_a_side_is_refused(fraction):
    message = _error(
        {
            "data": {"digits_validation_fraction": fraction},
            "experiments": {"digits": {}},
        }
    )
    assert message.startswith(
        f"config key 'data.digits_validation_fraction': {fraction} holds out "
    )
    assert (
        "use a fraction from 0.00501 to 0.99443 (exactly: above 9/1797, at most 1787/1797)"
        in message
    )


def test_the_digits_fraction_bound_is_scikit_learns_own():
    """Just inside the bound every class has a training and a validation image; just
    outside scikit-learn refuses the split (so the config refuses exactly what would fail)."""
    pytest.importorskip("sklearn")
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    assert len(labels) == 1797 and len(set(labels)) == 10
    for fraction in (0.00501, 1787 / 1797, 0.2):
        load_study(
            {
                "data": {"digits_validation_fraction": fraction},
                "experiments": {"digits": {}},
            }
        )
        train, validation = train_test_split(
            labels, test_size=fraction, stratify=labels, random_state=0
        )
        assert (
            np.bincount(train, minlength=10).min() >= 1
            and np.bincount(validation, minlength=10).min() >= 1
        )
    for fraction in (9 / 1797, 0.9945):
        with pytest.raises(
            ValueError, match="should be greater or equal to the number of classes"
        ):
            train_test_split(
                labels, test_size=fraction, stratify=labels, random_state=0
            )


def test_keys_that_would_be_ignored_are_refused():
    message = _error(
        {
            "data": {"splits": {"digits": {"train": "train[:50%]"}}},
            "experiments": {"digits": {}},
        }
    )
    assert message == (
        "config key 'data.splits.digits': digits comes from scikit-learn and has no TFDS splits, so this key "
        "would be ignored; its split is set by 'data.digits_validation_fraction'"
    )
    message = _error(
        {
            "data": {"source_dirs": {"digits": "/data/digits"}},
            "experiments": {"digits": {}},
        }
    )
    assert (
        "config key 'data.source_dirs.digits': digits is bundled with scikit-learn and reads no source files"
        in message
    )
    message = _error(
        {
            "data": {"splits": {"mnits": {"train": "train"}}},
            "experiments": {"mnist": {}},
        }
    )
    assert "config key 'data.splits.mnits': unknown dataset 'mnits'" in message
    message = _error(
        {
            "data": {"splits": {"mnist": {"train": "train", "test": "test"}}},
            "experiments": {"mnist": {}},
        }
    )
    assert "config key 'data.splits.mnist.test' is not a known key" in message
    study = load_study(
        {
            "data": {"splits": {"mnist": {"validation": "train[90%:]"}}},
            "experiments": {"mnist": {}},
        }
    )
    assert study.splits("mnist") == {"train": "train", "validation": "train[90%:]"}


def _demo_config(**lspp) -> dict:
    config = yaml.safe_load((REPOSITORY / "config" / "demo.yaml").read_text())
    config["methods"]["lspp"].update(lspp)
    return config


def _all_train_settings(study) -> dict:
    return {
        run.folder(study.runs_folder): study.train_settings(
            run.experiment, run.method, run.value_text, run.seed
        )
        for run in study.runs()
    }


def test_weight_decay_on_c_reaches_only_the_label_smoothing_plus_plus_runs():
    by_default = _all_train_settings(load_study(_demo_config()))
    on = _all_train_settings(load_study(_demo_config(weight_decay_on_c=True)))
    off = _all_train_settings(load_study(_demo_config(weight_decay_on_c=False)))
    assert by_default == on  # the shipped default: the method's code (--apply_wd 1)
    lspp = {folder for folder in on if "/lspp~" in folder}
    assert len(lspp) == 2 and len(on) == 14
    for folder in lspp:
        assert (on[folder]["weight_decay_on_c"], off[folder]["weight_decay_on_c"]) == (
            True,
            False,
        )
        assert {**on[folder], "weight_decay_on_c": False} == off[folder]
    # a gamma or alpha run's settings (Snakemake's params) have no such key and stay
    # exactly what they were, so switching it retrains no finished run of theirs
    for folder in set(on) - lspp:
        assert "weight_decay_on_c" not in on[folder] and on[folder] == off[folder]


def test_weight_decay_on_c_must_be_a_boolean():
    message = _error(_demo_config(weight_decay_on_c=1))
    assert "'methods.lspp.weight_decay_on_c': 1 is not of type 'boolean'" in message


def test_run_settings_hold_weight_decay_on_c_for_lspp_runs_only():
    study = load_study(_demo_config(weight_decay_on_c=False))
    lspp = study.train_settings("digits", "lspp", "0.1", 0)
    gamma = study.train_settings("digits", "gamma", "0.9", 0)
    assert RunSettings.from_dict(lspp).weight_decay_on_c is False
    assert RunSettings.from_dict(gamma).weight_decay_on_c is None
    assert RunSettings.from_dict(gamma).as_dict() == gamma
    without = {key: value for key, value in lspp.items() if key != "weight_decay_on_c"}
    with pytest.raises(ConfigError, match="must be true or false for a lspp run"):
        RunSettings.from_dict(without)
    with pytest.raises(ConfigError, match="must be absent .None. for a gamma run"):
        RunSettings.from_dict({**gamma, "weight_decay_on_c": True})


def test_tensorboard_logging_needs_tensorboard_installed(monkeypatch):
    import importlib.util

    from smoothbench.study import load_study

    config = {"compute": {"tensorboard": True}, "experiments": {"digits": {}}}
    assert load_study(config).config["compute"]["tensorboard"] is True
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "tensorboard" else real(name, *rest),
    )
    with pytest.raises(
        ConfigError, match=r"'compute.tensorboard': true needs the tensorboard package"
    ):
        load_study(config)
