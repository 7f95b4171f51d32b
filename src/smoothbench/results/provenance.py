"""Under what code and compute a study's numbers were made: the one place that reads a
run's provenance from its ``metrics.json`` (:func:`run_provenance`), groups the runs by
it (:func:`provenance_groups`) and says whether they mix (:func:`is_mixed`).

A run's provenance is :data:`PROVENANCE_COLUMNS`, everything that changes its numbers
as its attempts recorded them: the smoothbench code (commit, dirty tree, version), the
computation (backend, precision, XLA, deterministic, TF32), the device, ``XLA_FLAGS``
and the versions of Keras, the backend, CUDA and cuDNN. Each column holds the distinct
values of the run's attempts joined by '+' (a run resumed under another commit or
setting shows both), and :data:`MIXED_COLUMN` names the columns in which its attempts
differ. An attempt written before a key was recorded reads as the run's one record of
then (``software``, ``device``) where no attempt records it, else as
:data:`smoothbench.compute.decisions.UNRECORDED` (a computation key) or ``unknown``.
runs.csv holds them per run (:mod:`smoothbench.results.collection`); ``smoothbench-status``
reads them from the done runs' files; :func:`run_commits` gives a run's commits.

Runs with equal provenance form a group; the largest group comes first (the study's
main setting). A study is *mixed* when its runs form more than one group, one was
trained from a dirty tree, or one's attempts differ: its numbers may then differ for
reasons other than the method. The tables and plots state their runs' provenance in
one line (:func:`provenance_line`); the front page and ``smoothbench-status`` warn at
the top of a mixed study, listing the runs concerned and what differs
(:func:`warning_section`); ``provenance.csv`` / ``.md`` / ``.html`` in the tables folder
list the groups (:func:`smoothbench.results.provenance_files.write_provenance`). The documents: results/README.md.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from smoothbench.compute.decisions import UNRECORDED
from smoothbench.compute.software import LIBRARIES
from smoothbench.run_record import format_value

# How a run was computed, from its metrics.json's attempts (runs.csv's columns).
COMPUTE_COLUMNS = ["backend", "precision", "jit_compile", "deterministic"]
# the versions an attempt records (smoothbench.compute.software.LIBRARIES), where present
VERSION_COLUMNS = [f"{library}_version" for library in LIBRARIES]
# The rest of what changes a run's rounding, as its attempts recorded it.
# what each attempt records of them itself (the versions come in their own dict)
ATTEMPT_NUMERICS = ["tf32", "onednn", "onednn_isa", "device", "xla_flags"]
NUMERICS_COLUMNS = [*ATTEMPT_NUMERICS, *VERSION_COLUMNS]
CODE_COLUMNS = ["code_commit", "code_dirty", "code_version"]
PROVENANCE_COLUMNS = [*CODE_COLUMNS, *COMPUTE_COLUMNS, *NUMERICS_COLUMNS]
# The provenance columns in which a run's attempts differ ('' when they agree).
MIXED_COLUMN = "mixed_attempts"
RUN_COLUMNS = ["experiment", "method", "value", "seed"]
PROVENANCE_FILES = ("provenance.csv", "provenance.md", "provenance.html")
DETAIL_FILE = "provenance.md"
# The front page and smoothbench-status list at most this many runs of a mixed study.
LISTED_RUNS = 30
SHORT_COMMIT = 12
UNKNOWN = "unknown"  # an earlier attempt's value where a later one records it
_BACKEND_NAMES = {"jax": "JAX", "tensorflow": "TensorFlow", "torch": "PyTorch"}
_FIELD_NAMES = {
    "code_commit": ("code commit", "code commits"),
    "code_dirty": ("tree state", "tree states"),
    "code_version": ("code version", "code versions"),
    "backend": ("backend", "backends"),
    "precision": ("precision", "precisions"),
    "jit_compile": ("XLA setting", "XLA settings"),
    "deterministic": ("deterministic setting", "deterministic settings"),
    "tf32": ("TF32 setting", "TF32 settings"),
    "onednn": ("oneDNN setting", "oneDNN settings"),
    "onednn_isa": ("oneDNN instruction set", "oneDNN instruction sets"),
    "device": ("device", "devices"),
    "xla_flags": ("XLA_FLAGS", "XLA_FLAGS values"),
    **{
        f"{library}_version": (f"{name} version", f"{name} versions")
        for library, name in LIBRARIES.items()
    },
}
NOT_RECORDED = "not recorded"


# ---------------------------------------------------------------- one run


def _text(value) -> str:
    return "" if value is None else str(value)


def _attempt_values(attempt: dict) -> dict[str, str | None]:
    """One attempt's provenance, column -> text; None where it records nothing."""
    values: dict[str, str | None] = {
        key: _text(attempt[key]) if key in attempt else None
        for key in [*CODE_COLUMNS, *COMPUTE_COLUMNS, *ATTEMPT_NUMERICS]
    }
    versions = attempt.get("versions")
    for library in LIBRARIES:
        values[f"{library}_version"] = (
            _text(versions.get(library)) if isinstance(versions, dict) else None
        )
    return values


def _run_record(payload: dict) -> dict[str, str]:
    """What a metrics.json says once for the whole run (the attempt that finished it),
    read for attempts that record nothing of a column: its code and software, device."""
    software = payload.get("software")
    software = software if isinstance(software, dict) else {}
    code = software.get("smoothbench")
    code = code if isinstance(code, dict) else {}
    device = payload.get("device")
    return {
        "code_commit": code.get("commit") or "",
        "code_dirty": _text(code.get("dirty")),
        "code_version": _text(code.get("version")),
        "device": device if isinstance(device, str) else "",
        **{f"{name}_version": _text(software.get(name)) for name in LIBRARIES},
    }


def attempt_texts(payload: dict) -> dict[str, list[str]]:
    """column -> each attempt's text (one text for a file without attempts): an
    attempt that records nothing of a column reads the run's one record of it
    (:func:`_run_record`) when no attempt records it, else the value the code of then
    used (:data:`UNRECORDED`, computation keys) or :data:`UNKNOWN`."""
    attempts = payload.get("attempts")
    attempts = attempts if isinstance(attempts, list) else []
    read = [_attempt_values(one) for one in attempts if isinstance(one, dict)]
    whole = _run_record(payload)  # no computation key: only the attempts record them
    texts = {}
    for column in PROVENANCE_COLUMNS:
        found = [values[column] for values in read]
        if all(value is None for value in found):
            texts[column] = [whole.get(column, "")]
        else:
            fill = _text(UNRECORDED[column]) if column in UNRECORDED else UNKNOWN
            texts[column] = [fill if value is None else value for value in found]
    return texts


def run_provenance(payload: dict) -> dict[str, str]:
    """A metrics.json's :data:`PROVENANCE_COLUMNS`, as text (each the distinct values
    of its attempts joined by '+'; '' where not recorded: a file of an older version,
    a tree outside git), and :data:`MIXED_COLUMN`."""
    texts = attempt_texts(payload)
    joined = {column: "+".join(dict.fromkeys(found)) for column, found in texts.items()}
    mixed = [column for column, found in texts.items() if len(set(found)) > 1]
    return joined | {MIXED_COLUMN: ", ".join(mixed)}


def run_commits(payload: dict) -> set[str]:
    """The smoothbench commits a run's attempts were trained by ('' for an attempt
    whose code has no commit: an install without one, a file that records none); more
    than one for a run resumed under another commit."""
    return set(attempt_texts(payload)["code_commit"])


# ---------------------------------------------------------------- groups


@dataclasses.dataclass
class ProvenanceGroup:
    """Runs with one provenance: ``setting`` (column -> text) and the runs' rows."""

    setting: dict[str, str]
    runs: pd.DataFrame

    @property
    def count(self) -> int:
        return len(self.runs)

    @property
    def dirty(self) -> bool:
        return "True" in self.setting["code_dirty"].split("+")

    @property
    def within(self) -> str:
        """The columns in which each of its runs' attempts differ ('' when they agree)."""
        return self.setting.get(MIXED_COLUMN, "")


def provenance_groups(runs: pd.DataFrame) -> list[ProvenanceGroup]:
    """The runs (rows with :data:`RUN_COLUMNS`, :data:`PROVENANCE_COLUMNS` and
    :data:`MIXED_COLUMN`, e.g. runs.csv's; a column left out reads as '') grouped by
    provenance: most runs first, ties in the runs' order."""
    if not len(runs):
        return []
    columns = [*PROVENANCE_COLUMNS, MIXED_COLUMN]
    keys = [
        tuple(row)
        for row in pd.DataFrame(
            {
                column: runs[column].astype(str) if column in runs else ""
                for column in columns
            },
            index=runs.index,
        ).itertuples(index=False)
    ]
    groups = [
        ProvenanceGroup(dict(zip(columns, key)), runs[[found == key for found in keys]])
        for key in dict.fromkeys(keys)
    ]
    return sorted(groups, key=lambda group: -group.count)


def is_mixed(groups: list[ProvenanceGroup]) -> bool:
    """More than one group, a run trained from a dirty tree, or one whose attempts
    differ (resumed under another commit, setting, device or library)."""
    return len(groups) > 1 or any(group.dirty or group.within for group in groups)


def differing(groups: list[ProvenanceGroup]) -> dict[str, list[str]]:
    """column -> its distinct values, for each column that differs between groups."""
    found = {}
    for column in PROVENANCE_COLUMNS:
        values = list(dict.fromkeys(group.setting[column] for group in groups))
        if len(values) > 1:
            found[column] = values
    return found


# ---------------------------------------------------------------- as text


def _on_off(text: str) -> str:
    parts = text.split("+")
    return "+".join({"True": "on", "False": "off"}.get(part, part) for part in parts)


def value_text(column: str, text: str) -> str:
    """One provenance value as a reader reads it."""
    if not text:
        return NOT_RECORDED
    if column == "code_commit":
        return "+".join(part[:SHORT_COMMIT] or "none" for part in text.split("+"))
    if column == "code_dirty":
        return "+".join(
            {"True": "dirty", "False": "clean"}.get(part, part)
            for part in text.split("+")
        )
    if column == "backend":
        return "+".join(_BACKEND_NAMES.get(part, part) for part in text.split("+"))
    if column in ("jit_compile", "deterministic", "tf32", "onednn"):
        return _on_off(text)
    if column == "xla_flags":
        return f"'{text}'"
    return text


def _columns_text(columns: str) -> str:
    """MIXED_COLUMN's text in words: 'code commit, device'."""
    return ", ".join(
        _FIELD_NAMES.get(column, (column,))[0] for column in columns.split(", ")
    )


def setting_text(setting: dict[str, str]) -> str:
    """e.g. 'float32 (TensorFlow, XLA off, deterministic on, TF32 off) on CPU, Keras
    3.15.1, TensorFlow 2.21.0, code 0123abc'; a dirty tree is said after the commit, a
    run whose attempts differ last."""
    precision = setting["precision"] or f"precision {NOT_RECORDED}"
    compute = (
        f"{value_text('backend', setting['backend'])}, "
        f"XLA {value_text('jit_compile', setting['jit_compile'])}, "
        f"deterministic {value_text('deterministic', setting['deterministic'])}, "
        f"TF32 {value_text('tf32', setting.get('tf32', ''))}"
    )
    if setting.get("onednn"):
        isa = setting.get("onednn_isa")
        compute += f", oneDNN {value_text('onednn', setting['onednn'])}" + (
            f" ({isa})" if isa else ""
        )
    if setting["backend"] == "" and setting["jit_compile"] == "":
        compute = f"compute {NOT_RECORDED}"
    where = f" on {setting['device']}" if setting.get("device") else ""
    software = [
        f"{name} {setting[f'{library}_version']}"
        for library, name in LIBRARIES.items()
        if setting.get(f"{library}_version")
    ]
    if setting.get("xla_flags"):
        software.append(f"XLA_FLAGS {value_text('xla_flags', setting['xla_flags'])}")
    if setting["code_commit"]:
        code = f"code {value_text('code_commit', setting['code_commit'])}"
    elif setting.get("code_version"):
        code = f"code version {setting['code_version']} (no commit recorded)"
    else:
        code = f"code commit {NOT_RECORDED}"
    if "True" in setting["code_dirty"].split("+"):
        code += " with uncommitted changes (dirty tree)"
    text = f"{precision} ({compute}){where}, {', '.join([*software, code])}"
    if setting.get(MIXED_COLUMN):
        text += f"; attempts differ in {_columns_text(setting[MIXED_COLUMN])}"
    return text


def _runs_count(count: int) -> str:
    return f"{count} run{'s' if count != 1 else ''}"


def provenance_line(runs: pd.DataFrame, detail: str = DETAIL_FILE) -> str:
    """The one line a table or figure states: under what its ``runs`` were computed
    ('' for no runs); a mix names each setting with its run count."""
    groups = provenance_groups(runs)
    if not groups:
        return ""
    if len(groups) == 1:
        (group,) = groups
        line = f"Computed under {setting_text(group.setting)}: all {_runs_count(group.count)}."
        if group.within:
            return line + f" Not one setting from first epoch to last: see {detail}."
        return line + (f" Not one commit's code: see {detail}." if group.dirty else "")
    each = "; ".join(
        f"{setting_text(group.setting)}: {_runs_count(group.count)}" for group in groups
    )
    return f"Mixed provenance (see {detail}), computed under {each}."


def mix_text(groups: list[ProvenanceGroup]) -> str:
    """What mixes, e.g. '2 code commits (0123abc, 4567def), 2 precisions (float32,
    mixed_float16), a dirty tree'."""
    parts = [
        f"{len(values)} {_FIELD_NAMES[column][1]} ({', '.join(value_text(column, value) for value in values)})"
        for column, values in differing(groups).items()
        if column != "code_dirty"
    ]
    dirty = sum(group.count for group in groups if group.dirty)
    if dirty:
        parts.append(f"{_runs_count(dirty)} trained from a dirty tree")
    within = [group for group in groups if group.within]
    if within:
        columns = dict.fromkeys(", ".join(group.within for group in within).split(", "))
        parts.append(
            f"{_runs_count(sum(group.count for group in within))} whose attempts differ "
            f"({_columns_text(', '.join(columns))})"
        )
    return ", ".join(parts)


def _what_differs(setting: dict[str, str], main: dict[str, str]) -> str:
    parts = [
        f"{_FIELD_NAMES[column][0]} {value_text(column, setting[column])} "
        f"(most runs: {value_text(column, main[column])})"
        for column in PROVENANCE_COLUMNS
        if column != "code_dirty" and setting[column] != main[column]
    ]
    if setting.get(MIXED_COLUMN):
        parts.append(f"its attempts differ in {_columns_text(setting[MIXED_COLUMN])}")
    if "True" in setting["code_dirty"].split("+"):
        parts.append("uncommitted changes (dirty tree)")
    elif setting["code_dirty"] != main["code_dirty"]:
        parts.append(
            f"tree {value_text('code_dirty', setting['code_dirty'])} "
            f"(most runs: {value_text('code_dirty', main['code_dirty'])})"
        )
    return "; ".join(parts)


def concerned_runs(groups: list[ProvenanceGroup]) -> list[list[str]]:
    """[experiment, method, value, seed, what differs] of every run outside the main
    (largest) group, of every run trained from a dirty tree, and of every run whose
    attempts differ."""
    if not groups:
        return []
    main = groups[0].setting
    rows = []
    for index, group in enumerate(groups):
        if index == 0 and not group.dirty and not group.within:
            continue
        why = _what_differs(group.setting, main)
        rows += [
            [r.experiment, r.method, format_value(r.value), str(r.seed), why]
            for r in group.runs.itertuples()
        ]
    return rows


WARNING_HEADER = ["experiment", "method", "value", "seed", "what differs"]


def warning_section(runs: pd.DataFrame, listed: int = LISTED_RUNS) -> tuple | None:
    """A mixed study's warning, as a (title, header, rows, notes) section: what mixes,
    the main setting, and the runs concerned (at most ``listed``); None if not mixed."""
    groups = provenance_groups(runs)
    if not is_mixed(groups):
        return None
    rows = concerned_runs(groups)
    if len(groups) > 1:
        what = "not all computed alike: "
    elif groups[0].within:
        what = "computed alike, but each resumed under other code or compute than it began with: "
    else:
        what = "computed alike, but by code that no commit names: "
    notes = [
        f"The {_runs_count(len(runs))} behind these tables were {what}{mix_text(groups)}. "
        f"Most runs ({groups[0].count}): {setting_text(groups[0].setting)}. Differences between their "
        "numbers may come from the code or the compute, not the method alone.",
        "The runs listed differ from most runs (or were trained from a dirty tree, whose code no commit "
        "names, or their attempts differ); retrain them under one commit and compute setting (smoothbench-retire "
        "moves them aside, e.g. --other-commit or --other-precision float32, and the workflow trains them again), "
        "or report the mix. Every run's provenance: runs.csv (columns code_commit, code_dirty, code_version, "
        "backend, precision, jit_compile, deterministic, tf32, device, xla_flags, the *_version columns, and "
        f"{MIXED_COLUMN}: where its attempts differ); the groups: tables/provenance.md.",
    ]
    if len(rows) > listed:
        notes.append(f"{len(rows) - listed} more runs concerned are not listed here.")
    title = f"Warning: mixed provenance, {mix_text(groups)}"
    return title, WARNING_HEADER, rows[:listed], notes


def clean_text(runs: pd.DataFrame) -> str:
    """A study that does not mix, in one short line: its single commit and setting."""
    groups = provenance_groups(runs)
    if not groups:
        return "No finished runs yet."
    return f"All {_runs_count(groups[0].count)}: {setting_text(groups[0].setting)}."


def text_lines(runs: pd.DataFrame, listed: int = LISTED_RUNS) -> list[str]:
    """The provenance of ``runs`` as plain text lines (smoothbench-status): one line for
    a study that does not mix, else a warning, the main setting and the runs concerned
    with what differs; no lines for no runs."""
    if not len(runs):
        return []
    warning = warning_section(runs, listed)
    if warning is None:
        return [f"provenance: {clean_text(runs)}"]
    title, _, rows, notes = warning
    groups = provenance_groups(runs)
    lines = [
        f"WARNING: {title.removeprefix('Warning: ')}",
        f"  most runs ({groups[0].count}): {setting_text(groups[0].setting)}",
        "  runs that differ (retrain them under one commit and setting, or report the mix):",
    ]
    lines += [
        f"    {experiment} {method}~{value} seed {seed}: {why}"
        for experiment, method, value, seed, why in rows
    ]
    if len(notes) > 2:
        lines.append(f"    ... {notes[2]}")
    return lines
