"""One checkout per runs folder: the first checkout to train into a study's runs folder
marks it as its own (``{runs folder}/.owner.json``), and another checkout that points
at it is refused before any job, naming the folder and the owner.

Two checkouts whose configs give the same absolute ``results_folder`` would train into
the same run folders, resume each other's checkpoints under code they did not write,
and clean them up. Editing the config and running again from the same checkout is the
everyday loop, and stays free: the checkout is the mark, not the config. Moving the
study's folder moves its mark with it.

A runs folder inside the checkout that trains into it belongs to that checkout wherever
the two are copied or moved together (``cp -a``, ``mv``, ``rsync -a`` to a bigger disk):
"inside" is judged on resolved paths, so a symlink to a shared folder elsewhere is
still judged by its mark, and the mark is rewritten to the new place by the first job.
A package installed without a checkout (a study folder using the workflow as a module)
has the study folder, Snakemake's working folder, as its identity. To take a folder
over on purpose (the owner was moved or deleted), delete the mark.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

from smoothbench.errors import SmoothbenchError

OWNER_FILE = ".owner.json"
# set by the workflow for itself and its jobs (smoothbench.pipeline.jobs.use_checkout)
SOURCE_VARIABLE = "SMOOTHBENCH_SOURCE"


class ResultsOwnerError(SmoothbenchError, RuntimeError):
    """A runs folder that another checkout trains into."""


def checkout_identity(environment: Mapping[str, str] | None = None) -> str:
    """The checkout that runs: the folder above the ``src/`` the workflow imports the
    package from, resolved; outside a workflow, the package's own checkout; for a
    package installed without one (in site-packages), the working folder (the study
    folder Snakemake runs in)."""
    environment = os.environ if environment is None else environment
    source = environment.get(SOURCE_VARIABLE)
    if source:
        return str(Path(source).resolve().parent)
    package = Path(__file__).resolve().parents[1]
    if (
        package.parent.name == "src"
        and (package.parents[1] / "pyproject.toml").exists()
    ):
        return str(package.parents[1])
    return str(Path.cwd().resolve())


def is_inside(runs_folder: Path | str, identity: str) -> bool:
    """Whether ``runs_folder``, resolved (symlinks followed), lies inside the checkout
    or study folder ``identity``."""
    return Path(identity).resolve() in Path(runs_folder).resolve().parents


def marker_path(runs_folder: Path | str) -> Path:
    return Path(runs_folder) / OWNER_FILE


def _check_is_folder(runs_folder: Path | str) -> None:
    """Refuse a runs folder that is, or lies under, a file."""
    for place in [Path(runs_folder), *Path(runs_folder).parents]:
        if place.exists():
            if not place.is_dir():
                raise ResultsOwnerError(
                    f"{place} is a file, not a folder: the study writes its results under it "
                    f"(the runs folder {runs_folder}); set config key results_folder to a "
                    "folder, or move the file away"
                )
            return


def read_owner(runs_folder: Path | str) -> dict | None:
    _check_is_folder(runs_folder)
    path = marker_path(runs_folder)
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ResultsOwnerError(
            f"{path}: unreadable ({error}); delete it to let this checkout claim the folder"
        ) from None
    if not isinstance(owner, dict) or not isinstance(owner.get("checkout"), str):
        raise ResultsOwnerError(
            f"{path}: not a smoothbench owner record; delete it to let this checkout "
            "claim the folder"
        )
    return owner


def check_owner(runs_folder: Path | str, identity: str) -> dict | None:
    """Refuse ``runs_folder`` when another checkout marked it; return its mark (None
    when unmarked)."""
    owner = read_owner(runs_folder)
    if (
        owner is None
        or owner["checkout"] == identity
        or is_inside(runs_folder, identity)
    ):
        return owner
    path = marker_path(runs_folder).resolve()
    raise ResultsOwnerError(
        f"the runs folder {Path(runs_folder).resolve()} belongs to the checkout "
        f"{owner['checkout']} (it trained there first: {path}, {owner.get('claimed', '?')} "
        f"on {owner.get('host', '?')}); this checkout is {identity}. Two checkouts training "
        "into one runs folder resume and delete each other's checkpoints, so nothing was "
        "planned. Give this study its own config key results_folder, or, to take the "
        f"folder over on purpose (its owner was moved or deleted), delete {path}"
    )


def claim(runs_folder: Path | str, identity: str) -> None:
    """Mark ``runs_folder`` as ``identity``'s if nobody has; refuse it if another has.

    Jobs start together (four at once on a workstation): the mark is written whole to a
    file of this job's own, then linked to its name, which fails if another job got
    there first; either way the one mark is then checked."""
    owner = check_owner(runs_folder, identity)
    if owner is not None and owner["checkout"] == identity:
        return  # marked already, by this checkout
    folder = Path(runs_folder)
    if owner is not None:  # moved or copied with its checkout: the mark follows
        _write_mark(folder, identity, moved_from=owner["checkout"])
        return
    folder.mkdir(parents=True, exist_ok=True)
    own = _mark_file(folder, _record(identity))
    try:
        with contextlib.suppress(FileExistsError):  # another job marked it first
            os.link(own, marker_path(folder))
    finally:
        os.unlink(own)
    check_owner(runs_folder, identity)  # two checkouts claiming at once: one wins


def _record(identity: str, **more) -> dict:
    return {
        "checkout": identity,
        "claimed": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        **more,
    }


def _write_mark(folder: Path, identity: str, **more) -> None:
    """Replace the mark with ``identity``'s, atomically."""
    os.replace(_mark_file(folder, _record(identity, **more)), marker_path(folder))


def _mark_file(folder: Path, record: dict) -> str:
    """A new file of this job's own in ``folder`` holding ``record``, synced."""
    handle, own = tempfile.mkstemp(dir=folder, prefix=f"{OWNER_FILE}.", suffix=".new")
    with os.fdopen(handle, "w") as stream:
        stream.write(json.dumps(record, indent=1) + "\n")
        stream.flush()
        os.fsync(stream.fileno())
    return own
