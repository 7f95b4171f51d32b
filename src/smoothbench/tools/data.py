"""``smoothbench-data``: around the data stage.

smoothbench-data datasets            the registry: K, splits, source
smoothbench-data sources NAME        the files an air-gapped user must fetch for NAME
smoothbench-data verify FOLDER       check a prepared dataset against its manifest
"""

from __future__ import annotations

import sys

from smoothbench.config import ConfigError
from smoothbench.data.array_store import PreparedDataError, open_prepared
from smoothbench.data.registry import DATASETS, get_dataset
from smoothbench.tools.command_line import (
    add_study_arguments,
    study_from_arguments,
    tool_parser,
    user_error,
)


def main(argv: list[str] | None = None) -> int:
    """``smoothbench-data``: the dataset registry, source files, prepared-data checks."""
    parser = tool_parser(
        "smoothbench-data",
        "Around the data stage: list the datasets the workflow knows (K, splits, source),\n"
        "the source files an air-gapped machine must fetch for one, or check a prepared\n"
        "dataset folder against its manifest.",
        [
            "smoothbench-data datasets",
            "smoothbench-data datasets --configfile mine.yaml   # with the study's own",
            "smoothbench-data sources mnist",
            "smoothbench-data verify results/demo/prepared/digits",
        ],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser(
        "datasets",
        help="list the known datasets (with a study's config, its own ones too)",
    )
    add_study_arguments(listing, default=None, default_text="the registry alone")
    sources = commands.add_parser("sources", help="list the source files of a dataset")
    sources.add_argument("name")
    verify = commands.add_parser("verify", help="check a prepared dataset folder")
    verify.add_argument("folder")
    arguments = parser.parse_args(argv)

    if arguments.command == "datasets":
        specs = DATASETS
        if arguments.configfile or arguments.config:
            try:
                specs = study_from_arguments(arguments).dataset_specs
            except (OSError, ConfigError) as error:
                return user_error("smoothbench-data", error)
        for spec in specs.values():
            print(
                f"{spec.name:14s} K={spec.num_classes:<5d} {spec.train_split}/{spec.validation_split:10s} {spec.description}"
            )
    elif arguments.command == "sources":
        try:
            spec = get_dataset(arguments.name)
        except KeyError as error:  # a study's own dataset has no registry source files
            return user_error(
                "smoothbench-data",
                f"{error.args[0]}; `sources` lists a registry dataset's files",
            )
        if not spec.source_urls:
            print(f"{spec.name} needs no download ({spec.source})")
        for url in spec.source_urls:
            print(url)
        if spec.note:
            print(f"# {spec.note}", file=sys.stderr)
    elif arguments.command == "verify":
        try:
            manifest, arrays = open_prepared(arguments.folder)
        except PreparedDataError as error:
            # verify's answer is no: status 1, not a user's error
            print(f"smoothbench-data: error: {error}", file=sys.stderr)
            return 1
        shapes = ", ".join(
            f"{name} {list(array.shape)}" for name, array in arrays.items()
        )
        print(f"{manifest['dataset']}: ok (K={manifest['num_classes']}; {shapes})")
    return 0
