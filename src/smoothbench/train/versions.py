"""A run's kept versions: no change of config throws a finished run away.

A run folder publishes one version of its run: the one the current config asks for,
named by its fingerprints (settings and prepared data, :mod:`smoothbench.train.checkpoint`).
Every other version the folder held - finished (a ``.finished/`` record) or not (a
``checkpoint/``) - is kept in ``run_folder/.versions/{key}/``, ``key`` naming its
fingerprints (:func:`version_key`). A training job first sets aside what belongs to
other fingerprints and takes back what belongs to its own (:func:`set_aside_others`):
going back to earlier settings republishes the kept finished version, or resumes the
kept checkpoint where it stopped, the way DVC's run-cache restores a stage's outputs.

Snakemake deletes a job's declared outputs and its log before the job starts; a
hidden folder inside the run folder survives that, and so does each version's training
log, kept as ``train.log`` in its record or checkpoint (:class:`LogKeeper`).

While planning, :func:`plan_run` tells what a run's job will do (publish what is
there, take a kept version back, resume, train anew) and what a finished run it
replaces differed in; :mod:`smoothbench.pipeline.plan_summary` says it in one screen.
``smoothbench-status --versions`` lists the kept versions with their settings and size
(:func:`render_kept`); ``smoothbench-retire --kept-versions`` prunes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from smoothbench import files
from smoothbench.run_record import (
    CHECKPOINT_FILE,
    CHECKPOINT_FOLDER,
    FINGERPRINT_FILE,
    FINISHED_FOLDER,
    METRICS_FILE,
    TRAIN_LOG_FILE,
    VERSION_FILE,
    VERSIONS_FOLDER,
    output_names,
)
from smoothbench.train.checkpoint import (
    CHECKPOINT_FORMAT,
    belongs_to,
    read_checkpoint_state,
    settings_fingerprint,
)

FINGERPRINT_KEYS = ("format", "settings", "data")


def version_key(fingerprints: Mapping[str, Any]) -> str:
    """The name of a version's folder: 16 hex digits of its fingerprints' sha256."""
    content = {key: fingerprints.get(key) for key in FINGERPRINT_KEYS}
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_fingerprints(state: Mapping[str, Any]) -> dict:
    """The fingerprints a checkpoint's state was written under."""
    return {
        "format": state.get("format"),
        "settings": state.get("fingerprint"),
        "data": state.get("data_fingerprint"),
    }


def _recorded_fingerprints(record: Path) -> dict | None:
    try:
        recorded = json.loads((record / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _checkpoint_state(checkpoint_folder: Path) -> dict | None:

    path = checkpoint_folder / CHECKPOINT_FILE
    if not path.exists():
        return None
    return read_checkpoint_state(path)  # an unreadable one is refused, naming it


def _move(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, replacing a folder already there (the same
    version kept twice: the newer copy wins)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        old = target.with_name(f"{target.name}.replaced")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def keep(
    run_folder: Path, folder_name: str, fingerprints: Mapping, log: Callable
) -> Path:
    """Move ``run_folder/folder_name`` (``.finished`` or ``checkpoint``) into the kept
    version of ``fingerprints``; return where it went."""
    target = run_folder / VERSIONS_FOLDER / version_key(fingerprints) / folder_name
    _move(run_folder / folder_name, target)
    log(f"kept {run_folder / folder_name} (other settings or data) in {target}")
    return target


def set_aside_others(
    run_folder: Path, fingerprints: Mapping, method: str, log: Callable
) -> None:
    """Before a job trains or republishes: keep the finished record and the checkpoint
    of other fingerprints in ``.versions/``, taking their published outputs down
    (metrics.json first: nothing left looks finished), then take back the kept record
    and checkpoint of ``fingerprints``, if any."""
    run_folder = Path(run_folder)
    for stale in (run_folder / VERSIONS_FOLDER).glob("*/*.replaced"):
        shutil.rmtree(stale, ignore_errors=True)
    finished = run_folder / FINISHED_FOLDER
    if finished.is_dir():
        recorded = _recorded_fingerprints(finished)
        if recorded != dict(fingerprints):
            for name in reversed(output_names(method)):  # metrics.json first
                (run_folder / name).unlink(missing_ok=True)
            keep(run_folder, FINISHED_FOLDER, recorded or {"unreadable": True}, log)
    checkpoint = run_folder / CHECKPOINT_FOLDER
    state = _checkpoint_state(checkpoint)
    if state is not None and not belongs_to(state, fingerprints):
        keep(run_folder, CHECKPOINT_FOLDER, checkpoint_fingerprints(state), log)
    kept = run_folder / VERSIONS_FOLDER / version_key(fingerprints)
    if (kept / FINISHED_FOLDER).is_dir() and not finished.exists():
        os.replace(kept / FINISHED_FOLDER, finished)
        log(f"took back the finished version kept in {kept}")
    if (kept / CHECKPOINT_FOLDER / CHECKPOINT_FILE).exists() and not (
        checkpoint / CHECKPOINT_FILE
    ).exists():
        shutil.rmtree(checkpoint, ignore_errors=True)  # a status.json alone
        os.replace(kept / CHECKPOINT_FOLDER, checkpoint)
        log(f"took back the unfinished version kept in {kept}: it resumes there")
    if kept.is_dir() and not any(kept.iterdir()):
        kept.rmdir()


def write_version_file(
    checkpoint_folder: Path, settings: Mapping, fingerprints: Mapping
) -> None:
    """``checkpoint/version.json``: the settings and fingerprints an unfinished version
    trains under, for a listing of kept versions (a finished one's metrics.json says)."""
    files.write_json_atomic(
        Path(checkpoint_folder) / VERSION_FILE,
        {"settings": dict(settings), "fingerprints": dict(fingerprints)},
    )


class LogKeeper:
    """A version's training log across its attempts: the earlier attempts' log (kept in
    its checkpoint) followed by this job's log file so far. Snakemake deletes a job's
    log before it runs it again; this copy goes with the version."""

    def __init__(self, log_file: Path | str | None, checkpoint_folder: Path):
        self.log_file = Path(log_file) if log_file else None
        try:
            self.earlier = (Path(checkpoint_folder) / TRAIN_LOG_FILE).read_text()
        except OSError:
            self.earlier = ""

    def text(self) -> str:
        current = ""
        if self.log_file is not None:
            try:
                current = self.log_file.read_text(errors="replace")
            except OSError:
                pass
        return self.earlier + current

    def write(self, path: Path) -> None:
        """Write the log so far to ``path`` (atomically)."""
        with files.atomic_file(Path(path)) as stream:
            stream.write(self.text())

    def save(self, checkpoint_folder: Path) -> None:
        if self.log_file is not None:
            self.write(Path(checkpoint_folder) / TRAIN_LOG_FILE)


# ---------------------------------------------------------------- planning


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a run's job will do, as far as planning can tell from its folder.

    ``action``: "finished" (its outputs are there: nothing to do, or a republish),
    "take back" (a kept finished version of these settings is published again, nothing
    trains), "resume" (a checkpoint of these settings, in place or kept), "train".
    ``replaces``: the settings that changed, ``{key: (old, new)}``, when a finished
    version of other settings is published now (it is kept, not lost)."""

    action: str
    replaces: dict = dataclasses.field(default_factory=dict)


def _flat(settings: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_keys(old: Mapping, new: Mapping) -> dict:
    """``{key: (old, new)}`` for every (dotted) key whose value differs."""
    old, new = _flat(old), _flat(new)
    return {
        key: (old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    }


def _metrics_settings(path: Path) -> dict | None:
    try:
        settings = json.loads(path.read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return None
    return settings if isinstance(settings, dict) else None


def plan_run(
    run_folder: Path | str, settings: Mapping, data_fingerprint: str | None
) -> RunPlan:
    """What the job of the run in ``run_folder`` will do under ``settings`` (a job's
    params) and prepared data of ``data_fingerprint`` (None before it is prepared:
    then settings alone are compared)."""
    run_folder = Path(run_folder)
    wanted = {
        "format": CHECKPOINT_FORMAT,
        "settings": settings_fingerprint(dict(settings)),
        "data": data_fingerprint,
    }

    def matches(recorded: Mapping | None) -> bool:
        if not recorded:
            return False
        keys = FINGERPRINT_KEYS if data_fingerprint else ("format", "settings")
        return all(recorded.get(key) == wanted[key] for key in keys)

    finished = run_folder / FINISHED_FOLDER
    replaces: dict[str, tuple[Any, Any]] = {}
    if finished.is_dir():
        if matches(_recorded_fingerprints(finished)):
            return RunPlan("finished")
        old = _metrics_settings(finished / METRICS_FILE)
        replaces = changed_keys(old, settings) if old else {"(unknown)": (None, None)}
        if old is not None and not replaces:
            replaces = {"prepared data": ("other", "this")}
    for kept in sorted((run_folder / VERSIONS_FOLDER).glob("*/")):
        if matches(_recorded_fingerprints(kept / FINISHED_FOLDER)):
            return RunPlan("take back", replaces)
    try:
        state = _checkpoint_state(run_folder / CHECKPOINT_FOLDER)
    except Exception:  # refused by the job itself, naming the file
        state = None
    # the job's own test (belongs_to) where the data is known; before, settings alone
    resumes = (
        belongs_to
        if data_fingerprint
        else lambda state, _: matches(checkpoint_fingerprints(state))
    )
    if state is not None and resumes(state, wanted):
        return RunPlan("resume", replaces)
    for kept in sorted((run_folder / VERSIONS_FOLDER).glob("*/")):
        version = kept / CHECKPOINT_FOLDER / VERSION_FILE
        try:
            recorded = json.loads(version.read_text()).get("fingerprints")
        except (OSError, ValueError, AttributeError):
            continue
        if matches(recorded):
            return RunPlan("resume", replaces)
    return RunPlan("train", replaces)


# ---------------------------------------------------------------- listing


def folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(
        path.stat().st_size for path in Path(folder).rglob("*") if path.is_file()
    )


def size_text(size: int) -> str:
    """Bytes in words: ``812 B``, ``14.2 kB``, ``3.3 MB``, ``1.2 GB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def kept_versions(run_folder: Path | str) -> list[dict]:
    """Every kept version of a run: its key, whether it finished, its settings (None
    where unknown), its best validation accuracy (finished ones) and its size."""
    versions = []
    for kept in sorted(Path(run_folder, VERSIONS_FOLDER).glob("*/")):
        finished = kept / FINISHED_FOLDER
        settings, accuracy, state = None, None, "unfinished"
        if finished.is_dir():
            state = "finished"
            try:
                metrics = json.loads((finished / METRICS_FILE).read_text())
                settings, accuracy = (
                    metrics.get("settings"),
                    metrics.get("best_val_accuracy"),
                )
            except (OSError, ValueError):
                pass
        else:
            try:
                version = json.loads(
                    (kept / CHECKPOINT_FOLDER / VERSION_FILE).read_text()
                )
                settings = version.get("settings")
            except (OSError, ValueError):
                pass
        versions.append(
            {
                "key": kept.name,
                "state": state,
                "settings": settings,
                "best_val_accuracy": accuracy,
                "bytes": folder_size(kept),
                "folder": str(kept),
            }
        )
    return versions


def render_kept(study) -> str:
    """The kept versions of every run of ``study``: per run, each version's state, best
    validation accuracy, size and what its settings differ in from the current
    config's; then the total size."""
    lines, total, count = [], 0, 0
    for run in study.runs():
        folder = run.folder(study.runs_folder)
        kept = kept_versions(folder)
        if not kept:
            continue
        current = study.train_settings(
            run.experiment, run.method, run.value_text, run.seed
        )
        lines.append(f"{folder}:")
        for version in kept:
            count += 1
            total += version["bytes"]
            accuracy = version["best_val_accuracy"]
            differs = (
                ", ".join(
                    f"{key} {old} (now {new})"
                    for key, (old, new) in changed_keys(
                        version["settings"], current
                    ).items()
                )
                if version["settings"] is not None
                else "settings not recorded"
            ) or "the same settings, other prepared data"
            lines.append(
                f"  {version['key']}  {version['state']:<10}  "
                f"{'' if accuracy is None else f'best {accuracy:.4f}  '}"
                f"{size_text(version['bytes'])}  {differs}"
            )
    if not count:
        return f"no kept versions under {study.runs_folder}"
    lines.append(
        f"{count} kept version(s), {size_text(total)}; going back to their settings "
        "publishes them again without training; `smoothbench-retire --kept-versions` "
        "moves them out"
    )
    return "\n".join(lines)
