"""What every job adapter shares: its log, its one-line errors, and the checkout check."""

from __future__ import annotations

from pathlib import Path

import pytest

from smoothbench import workflow_support

PACKAGE = Path(workflow_support.__file__).resolve().parent


def test_a_job_that_imported_another_copy_of_the_package_stops_naming_both(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("SMOOTHBENCH_SOURCE", str(PACKAGE.parent))
    workflow_support.check_source()  # the checkout's own copy: fine
    monkeypatch.setenv("SMOOTHBENCH_SOURCE", str(tmp_path / "other-clone" / "src"))
    with pytest.raises(workflow_support.WrongCheckoutError) as error:
        workflow_support.check_source()
    message = str(error.value)
    assert f"imported smoothbench from {PACKAGE}" in message
    assert (
        str(tmp_path / "other-clone" / "src" / "smoothbench") in message
        and "pip uninstall" in message
    )
    # Inside a job's log context: the job fails before its body runs, the terminal says why.
    ran = []
    with pytest.raises(SystemExit), workflow_support.logged(tmp_path / "job.log"):
        ran.append(True)
    assert not ran
    assert "error: this job imported smoothbench from" in capfd.readouterr().err


def test_an_interrupted_job_says_what_happened_not_an_empty_error(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.delenv("SMOOTHBENCH_SOURCE", raising=False)
    with pytest.raises(KeyboardInterrupt):
        with workflow_support.logged(tmp_path / "job.log"):
            raise KeyboardInterrupt
    terminal = capfd.readouterr().err
    assert (
        "error: interrupted (Ctrl-C)" in terminal
        and "resumes from its last checkpoint" in terminal
    )
    assert "error: \n" not in terminal
    assert workflow_support.describe_error(ValueError()) == "ValueError"
