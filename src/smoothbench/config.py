"""Validate a smoothbench config against its JSON schema, with every default filled.

The first of two layers, both run before Snakemake plans a single job: the schema
(``src/smoothbench/schemas/config.schema.yaml``, package data, which
``workflow/schemas/config.schema.yaml`` links to) checks types, ranges and unknown keys
(typos) and fills the defaults; :mod:`smoothbench.study` then checks the facts the
schema cannot express and resolves the study. Every error names the config key at
fault, e.g. ``experiments.svhn.gammas[0]``.

Values given on the command line arrive as text: Snakemake's ``--config
'seeds=[0,1]'`` reads a nested value with YAML's base loader, every scalar a string
(``['0', '1']``). Where the schema wants anything but a string, such a string is read
as YAML first (:func:`read_typed_strings`), so ``seeds=[0,1]`` and ``protocol={epochs:
3}`` work as they would in a config file; strings the schema takes as strings (names,
paths, ``auto``, ``grid``) are left as written, except YAML's null (``null``, ``~``,
nothing) where the schema also takes null (``data={tfds_data_dir: null}``), which is
null as in a config file.

A config too large to be a study (more than :data:`MAX_VALUES` values with YAML's
aliases expanded, an anchor bomb; or nested deeper than :data:`MAX_DEPTH`) is refused
before the schema reads it, naming the key (:func:`check_size`).
"""

from __future__ import annotations

import copy
import difflib
import importlib.resources
import math
import re
from importlib.resources.abc import Traversable
from pathlib import Path

import jsonschema
import yaml

from smoothbench.errors import SmoothbenchError

# Package data (pyproject.toml's package-data), so an installed smoothbench finds it too.
SCHEMA_PATH = (
    importlib.resources.files("smoothbench") / "schemas" / "config.schema.yaml"
)


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


def load_schema(schema_path: Path | str | Traversable = SCHEMA_PATH) -> dict:
    if isinstance(schema_path, str):
        schema_path = Path(schema_path)
    return yaml.safe_load(schema_path.read_text())


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


# A number as YAML 1.2 writes it: PyYAML (YAML 1.1) reads 1e-3 as a string.
_NUMBER = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# YAML's null as written (PyYAML's resolver), which Snakemake's base loader leaves a string.
_NULL = re.compile(r"~|null|Null|NULL|")


def _kinds(schema: dict, root: dict) -> list:
    """The forms a schema takes: its JSON types, and the values of its enum or const,
    over every branch of a ``oneOf`` or ``anyOf``."""
    schema = _resolve(schema, root)
    branches = schema.get("oneOf") or schema.get("anyOf")
    if branches:
        return [kind for branch in branches for kind in _kinds(branch, root)]
    if "const" in schema:
        return [("value", schema["const"])]
    if "enum" in schema:
        return [("value", value) for value in schema["enum"]]
    kind = schema.get("type")
    if kind is None:
        return [("type", "any")]
    return [("type", name) for name in ([kind] if isinstance(kind, str) else kind)]


def _takes_text(text: str, kinds: list) -> bool:
    """Whether a string is one of a schema's forms as written (a name, a path, 'auto')."""
    return any(
        kind == ("type", "string") or kind == ("type", "any") or kind == ("value", text)
        for kind in kinds
    )


def _takes_non_strings(kinds: list) -> bool:
    """Whether a schema has a form besides strings (a number, a list, true, ...)."""
    return any(
        (form == "type" and name != "string")
        or (form == "value" and not isinstance(name, str))
        for form, name in kinds
    )


def _branch_for(value, schema: dict, root: dict) -> dict | None:
    """The schema a mapping or a list is read with: ``schema`` itself, or the branch of
    its ``oneOf``/``anyOf`` that takes mappings (lists)."""
    schema = _resolve(schema, root)
    branches = schema.get("oneOf") or schema.get("anyOf")
    if not branches:
        return schema
    wanted = "object" if isinstance(value, dict) else "array"
    for branch in branches:
        branch = _resolve(branch, root)
        kind = branch.get("type")
        if kind == wanted or (isinstance(kind, list) and wanted in kind):
            return branch
    return None


def read_typed_strings(value, schema: dict, root: dict | None = None):
    """``value`` with each string read as YAML where ``schema`` wants no string there.

    A string the schema takes as written (any string, or one of its enum values) stays,
    unless it is YAML's null (``null``, ``~``, empty) and the schema takes null too;
    one that YAML cannot read, or reads to another string, stays too, so that the
    schema's own message names the key. A number in YAML 1.2's notation that PyYAML
    leaves a string (``1e-3``) is read as a number where the schema wants one. Mappings
    and lists are read key by key with their ``properties``, ``additionalProperties``
    and ``items`` (``$ref`` and ``oneOf`` followed); values that are no strings are
    never changed.
    """
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if isinstance(value, str):
        kinds = _kinds(schema, root)
        if ("type", "null") in kinds and _NULL.fullmatch(value.strip()):
            return None  # as a config file reads it: tfds_data_dir: ~ is null
        if _takes_text(value, kinds) or not _takes_non_strings(kinds):
            return value
        try:
            loaded = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(loaded, str):
            if ("type", "number") in kinds and _NUMBER.fullmatch(value.strip()):
                return float(value)
            return value
        return read_typed_strings(loaded, schema, root)
    if not isinstance(value, (dict, list)):
        return value
    branch = _branch_for(value, schema, root)
    if branch is None:
        return value
    schema = branch
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return value
        return [read_typed_strings(item, items, root) for item in value]
    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    typed = {}
    for key, item in value.items():
        subschema = properties.get(key, additional)
        typed[key] = (
            read_typed_strings(item, subschema, root)
            if isinstance(subschema, dict)
            else item
        )
    return typed


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


# Keys that earlier versions read and this one refuses, with what replaces them.
_MEASURED_COMPUTE = (
    "training jobs no longer measure their compute settings: compute auto is a fixed "
    "rule, and `smoothbench-tune` measures this machine and writes a compute block to "
    "pass as a second config file (docs/speed.md); remove this key"
)
REMOVED_KEYS = {
    ("compute", "tune"): _MEASURED_COMPUTE,
    ("compute", "tune_from_images"): _MEASURED_COMPUTE,
    (
        "compute",
        "tuning_seconds",
    ): "it is smoothbench-tune's --seconds now; remove this key",
    (
        "compute",
        "tuning_rounds",
    ): "it is smoothbench-tune's --rounds now; remove this key",
    ("compute", "tuning_folder"): _MEASURED_COMPUTE,
}


def _check_removed_keys(config: dict) -> None:
    found = []
    for path, why in REMOVED_KEYS.items():
        # a config value of any type; only a mapping is looked into
        section: object = config
        for part in path[:-1]:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict) and path[-1] in section:
            found.append(f"config key {format_key(list(path))!r} was removed: {why}")
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))


# A study's config holds hundreds of values, a few levels deep; YAML's aliases (*name)
# can make billions of one anchor (a "billion laughs"), which the schema's error text
# would write out for hours, or make a value that holds itself.
MAX_VALUES = 100_000
MAX_DEPTH = 32


def _too_large(value, depth: int = 0) -> str | None:
    """Why ``value`` (at ``depth`` in the config) is too large to check, or None; counts
    each alias where it is used, and stops counting at the bounds."""
    count, stack = 0, [(value, depth)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return f"holds more than {MAX_VALUES:,} values"
        if depth > MAX_DEPTH:
            return f"is nested more than {MAX_DEPTH} levels deep"
        if isinstance(item, dict):
            stack += [(child, depth + 1) for child in item.values()]
        elif isinstance(item, list):
            stack += [(child, depth + 1) for child in item]
    return None


def check_size(config: dict) -> None:
    """Refuse a config too large to be a study, naming the innermost keys whose values
    alone are too large (``seeds`` for an anchor bomb under seeds)."""
    why = _too_large(config)
    if why is None:
        return
    path: list[object] = []  # the config keys down to ``value``
    value, large = config, []
    while isinstance(value, dict):
        large = [
            key
            for key, item in value.items()
            if _too_large(item, len(path) + 1) is not None
        ]
        if len(large) != 1:
            break
        path.append(large[0])
        value = value[large[0]]
        why = _too_large(value, len(path))
    names = [format_key(path + [key]) for key in large] if len(large) > 1 else []
    keys = (
        f"keys {', '.join(map(repr, names))}" if names else f"key {format_key(path)!r}"
    )
    raise ConfigError(
        f"invalid config:\n  config {keys}: the value {why} once each YAML alias "
        "(*name) is written out, too large for a study's config; write the values out "
        "(an anchor of copies of copies, or one that holds itself, is a mistake or an "
        "attack)"
    )


def validate_config(
    config: dict, schema_path: Path | str | Traversable = SCHEMA_PATH
) -> dict:
    """Return a deep copy of ``config`` with defaults filled, or raise ConfigError."""
    if not isinstance(config, dict):
        raise ConfigError(
            f"the config must be a mapping of keys, got {type(config).__name__}"
        )
    check_size(config)  # before anything walks it, the schema's error text above all
    _check_removed_keys(config)
    schema = load_schema(schema_path)
    # --config values arrive as strings (Snakemake reads them with YAML's base loader)
    typed = read_typed_strings(copy.deepcopy(config), schema)
    check_size(typed)  # a string read as YAML may be a bomb of its own
    filled = fill_defaults(typed, schema)
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


def merge_layers(base: dict, override: dict) -> dict:
    """``override`` updated into a copy of ``base`` key by key, mappings recursively
    (Snakemake's layering of config files; an experiment's keys over the protocol)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_layers(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_config_files(paths: list[Path | str]) -> dict:
    """The config of several YAML files layered as Snakemake's ``--configfile A B``
    layers them: each later file updated into the earlier ones key by key, mappings
    recursively (so a machine file's ``compute:`` block keeps the study's other keys)."""
    config: dict = {}
    for path in paths:
        with open(path) as handle:
            layer = yaml.safe_load(handle) or {}
        if not isinstance(layer, dict):
            raise ConfigError(
                f"{path}: a config file must be a mapping of keys, not {type(layer).__name__}"
            )
        config = merge_layers(config, layer)
    return config
