"""``smoothbench-profile``: write the workflow profile into a study folder.

The profile (``workflow_profile.yaml`` beside this module) holds the Snakemake settings
that keep finished runs safe: the rerun triggers (no rerun on a code or environment
change) and ``rerun-incomplete``. No Snakefile directive can set them; Snakemake reads
them from ``profiles/default/config.yaml`` beside the working folder or the Snakefile.
The checkout has that file (a link to this one); a study folder that uses the workflow
as a module gets its copy from this command. Planning warns when a run goes without it
(:func:`smoothbench.pipeline.plan_summary.rerun_warning`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROFILE = Path(__file__).with_name("workflow_profile.yaml")
PROFILE_PATH = Path("profiles") / "default" / "config.yaml"


def write_profile(folder: Path | str, force: bool = False) -> tuple[Path, str]:
    """Write the profile to ``folder/profiles/default/config.yaml``; return the path
    and what happened ("written", "unchanged"). A different file there is refused
    (FileExistsError naming it) unless ``force``."""
    target = Path(folder) / PROFILE_PATH
    wanted = PROFILE.read_text()
    if target.exists():
        if target.read_text() == wanted:
            return target, "unchanged"
        if not force:
            raise FileExistsError(
                f"{target} exists and differs from smoothbench's workflow profile; "
                "compare the two, then give --force to replace it"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(wanted)
    return target, "written"


def main(argv: list[str] | None = None) -> int:
    from smoothbench.tools.command_line import tool_parser, user_error

    parser = tool_parser(
        "smoothbench-profile",
        "Write smoothbench's workflow profile (rerun triggers, rerun-incomplete) to\n"
        "FOLDER/profiles/default/config.yaml, where Snakemake reads it on every run:\n"
        "one step of a study folder that uses the workflow as a module.",
        [
            "smoothbench-profile            # in the study folder",
            "smoothbench-profile my-study",
        ],
    )
    parser.add_argument(
        "folder", nargs="?", default=".", help="the study folder (default: here)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace a different profile"
    )
    arguments = parser.parse_args(argv)
    try:
        target, what = write_profile(arguments.folder, arguments.force)
    except (OSError, argparse.ArgumentError) as error:
        return user_error("smoothbench-profile", error)
    print(f"{target}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
