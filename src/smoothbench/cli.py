"""``smoothbench-data``: small helpers around the data stage, for people and scripts.

    smoothbench-data datasets            the registry: K, splits, source
    smoothbench-data sources NAME        the files an air-gapped user must fetch for NAME
    smoothbench-data verify FOLDER       check a prepared dataset against its manifest
"""

from __future__ import annotations

import argparse
import sys

from smoothbench.registry import DATASETS, get_dataset
from smoothbench.storage import PreparedDataError, open_prepared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smoothbench-data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("datasets", help="list the known datasets")
    sources = commands.add_parser("sources", help="list the source files of a dataset")
    sources.add_argument("name")
    verify = commands.add_parser("verify", help="check a prepared dataset folder")
    verify.add_argument("folder")
    arguments = parser.parse_args(argv)

    if arguments.command == "datasets":
        for spec in DATASETS.values():
            print(f"{spec.name:14s} K={spec.num_classes:<5d} {spec.train_split}/{spec.validation_split:10s} {spec.description}")
    elif arguments.command == "sources":
        spec = get_dataset(arguments.name)
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
            print(f"error: {error}", file=sys.stderr)
            return 1
        shapes = ", ".join(f"{name} {list(array.shape)}" for name, array in arrays.items())
        print(f"{manifest['dataset']}: ok (K={manifest['num_classes']}; {shapes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
