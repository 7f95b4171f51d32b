"""What every console tool shares (one module per tool beside this one: ``smoothbench-data`` is
:mod:`smoothbench.tools.data`, and so on).

Every tool takes ``--version`` (:func:`add_version_option`) and says in ``--help`` what it
does, with examples (:func:`tool_parser`). Every tool that reads a study takes its config
as Snakemake does (:func:`add_study_arguments`): ``--configfile`` with one file or several,
layered key by key, and ``--config KEY=VALUE ...`` over them, so that
``smoothbench-status --configfile config.yaml mine.yaml --config 'seeds=[0]'`` sees the
study that ``snakemake`` with the same options plans.

Every tool reports a user's error the same way (:func:`user_error`): a bad config, a
missing or unreadable file, or an action refused prints ``<tool>: error: <what, naming
the config key, file or run>`` on stderr and exits :data:`USER_ERROR` (2, as argparse
does for a wrong option). Exit status 1 is kept for a check whose answer is no
(``smoothbench-equivalence``: a setting not shown equivalent; ``smoothbench-data
verify``: a damaged folder), 0 for success.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from smoothbench.config import ConfigError, merge_layers, read_config_files
from smoothbench.study import Study, load_study

# The exit status of a user's error, in every smoothbench-* tool.
USER_ERROR = 2


class UsageError(Exception):
    """A tool's own refusal of what it was asked (its message names the culprit);
    :func:`user_error` reports it."""


def user_error(tool: str, error: object) -> int:
    """Print ``<tool>: error: <error>`` on stderr; return :data:`USER_ERROR`."""
    print(f"{tool}: error: {error}", file=sys.stderr)
    return USER_ERROR


def version_text(prog: str) -> str:
    """``<prog> <version>``, and the commit when the package is imported from a git
    checkout: the same provenance a run records in its metrics.json
    (:func:`smoothbench.compute.software.code_provenance`)."""
    from smoothbench.compute.software import code_provenance

    provenance = code_provenance()
    text = f"{prog} {provenance['version']}"
    if provenance["commit"]:
        changes = ", with uncommitted changes" if provenance["dirty"] else ""
        text += f" (commit {provenance['commit'][:12]}{changes})"
    return text


class _VersionAction(argparse.Action):
    """argparse's own ``action="version"`` takes its text when the parser is built: this
    one asks git only when ``--version`` is given."""

    def __init__(self, option_strings: Sequence[str], dest: str, **keywords) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="print the tool's name, smoothbench's version and (in a git checkout) its commit, then exit",
            **keywords,
        )

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text(parser.prog))
        parser.exit()


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a ``--version`` that prints :func:`version_text` and exits 0."""
    parser.add_argument("--version", action=_VersionAction)


def tool_parser(
    prog: str, description: str, examples: Sequence[str]
) -> argparse.ArgumentParser:
    """The parser of one console script: its own description, its examples as the
    epilog (kept as written), and ``--version``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="examples:\n" + "\n".join(f"  {example}" for example in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_option(parser)
    return parser


def add_study_arguments(
    parser: argparse.ArgumentParser,
    default: Sequence[str] | None = ("config.yaml",),
    default_text: str | None = None,
) -> None:
    """``--configfile FILE [FILE ...]`` and ``--config KEY=VALUE [...]``, as Snakemake's:
    the files layered in order, each later one updated into the earlier ones key by key
    (mappings recursively), then the ``--config`` values over them. ``default``: the
    files read without ``--configfile`` (None: the tool chooses them when it runs, as
    ``default_text`` says)."""
    parser.add_argument(
        "--configfile",
        nargs="+",
        default=list(default) if default else None,
        metavar="FILE",
        help="the study's config files, layered as Snakemake layers them: each later "
        "file updated into the earlier ones key by key, e.g. config.yaml mine.yaml "
        f"(default: {default_text or ' '.join(default or [])})",
    )
    parser.add_argument(
        "--config",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config values over the files, as Snakemake's --config takes them, e.g. "
        "'seeds=[0,1]' 'protocol={epochs: 3}' (a value is read as YAML)",
    )


def parse_config_entries(entries: Sequence[str]) -> dict:
    """``--config`` read by Snakemake's own rules (snakemake.cli.parse_config, which
    :func:`config_overrides` prefers): KEY=VALUE, the value an int, a float, True or
    False, else YAML read with the base loader (so nested values stay strings, typed by
    the schema: :func:`smoothbench.config.read_typed_strings`), an empty value None."""
    import re

    import yaml

    readers = (
        int,
        float,
        {"True": True, "False": False}.__getitem__,
        lambda text: yaml.load(text, Loader=yaml.BaseLoader),
    )
    config: dict = {}
    for entry in entries:
        key, separator, text = entry.partition("=")
        if not separator:
            raise ValueError(
                "Invalid config definition: Config entries have to be defined as name=value pairs."
            )
        if not re.match(r"[a-zA-Z_][\w-]*\w$", key):
            raise ValueError(
                "Invalid config definition: Config entry must start with a valid identifier."
            )
        # None, the text, or what int, float, the bool words or YAML read from it
        value: object = None
        if text:
            value = text
            for read in readers:
                try:
                    value = read(text)
                    break
                except (ValueError, KeyError, yaml.YAMLError):
                    continue
        config = merge_layers(config, {key: value})
    return config


def config_overrides(entries: Sequence[str]) -> dict:
    """The config values of ``--config KEY=VALUE ...`` (ConfigError when one is not
    KEY=VALUE)."""
    if not entries:
        return {}
    try:
        from snakemake.cli import parse_config
    except ImportError:  # a Snakemake without it: the same rules, here
        parse_config = parse_config_entries
    try:
        return parse_config(list(entries))
    except ValueError as error:
        raise ConfigError(f"--config {' '.join(entries)}: {error}") from None


def config_from_arguments(
    arguments: argparse.Namespace, default: Sequence[Path | str] = ("config.yaml",)
) -> dict:
    """The config of :func:`add_study_arguments`' options, before validation: the files
    (``default`` when the parser gave none) layered, then the ``--config`` values."""
    files = arguments.configfile or list(default)
    return merge_layers(read_config_files(files), config_overrides(arguments.config))


def study_from_arguments(
    arguments: argparse.Namespace, default: Sequence[Path | str] = ("config.yaml",)
) -> Study:
    """The study :func:`config_from_arguments` names, validated and resolved, as
    Snakemake resolves it with the same ``--configfile`` and ``--config``."""
    return load_study(config_from_arguments(arguments, default))


def study_arguments_text(arguments: argparse.Namespace) -> str:
    """The study's options as a user writes them, for messages: ``config.yaml mine.yaml
    --config seeds=[0]``."""
    text = " ".join(arguments.configfile or [])
    if arguments.config:
        text += " --config " + " ".join(arguments.config)
    return text
