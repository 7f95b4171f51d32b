"""Every console script: --version names it, the package's version and commit; --help
says what this tool does, with examples, not the package's one-liner."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPOSITORY

import smoothbench
from smoothbench.tools import command_line

PYPROJECT = (REPOSITORY / "pyproject.toml").read_text()


def project_table(name: str) -> dict[str, str]:
    """``[name]`` of pyproject.toml as strings: tomllib where there is one (3.11+), else
    the ``key = "value"`` lines that these two tables are made of."""
    try:
        import tomllib
    except ImportError:
        body = PYPROJECT.split(f"[{name}]\n", 1)[1].split("\n[", 1)[0]
        return dict(re.findall(r'^"?([\w.-]+)"?\s*=\s*"([^"]*)"', body, re.MULTILINE))
    table = tomllib.loads(PYPROJECT)
    for key in name.split("."):
        table = table[key]
    return table


SCRIPTS = project_table("project.scripts")


def entry_point(script: str):
    """The function pyproject.toml installs as ``script``."""
    module, function = SCRIPTS[script].split(":")
    return getattr(importlib.import_module(module), function)


def run_script(script: str, arguments: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        entry_point(script)(arguments)
    assert stopped.value.code in (0, None)
    return capsys.readouterr().out


def test_the_three_tools_are_installed():
    assert {"smoothbench-data", "smoothbench-tables", "smoothbench-cost"} <= set(
        SCRIPTS
    )


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_version_names_the_tool_and_the_packages_version(script, capsys):
    version = project_table("project")["version"]
    assert smoothbench.__version__ == version
    printed = run_script(script, ["--version"], capsys)
    assert printed.startswith(f"{script} {version}")
    head = subprocess.run(
        # where the package in use was imported from, as its metrics.json says
        ["git", "-C", str(Path(smoothbench.__file__).parent), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
    )
    if head.returncode == 0:  # a git checkout: the commit the code came from
        assert f"(commit {head.stdout.strip()[:12]}" in printed
    else:
        assert printed.strip() == f"{script} {version}"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_says_what_the_tool_does_with_an_example(script, capsys):
    printed = run_script(script, ["--help"], capsys)
    assert printed.startswith(f"usage: {script} ")
    one_liners = [
        smoothbench.__doc__.splitlines()[0],
        command_line.__doc__.splitlines()[0],
        project_table("project")["description"],
    ]
    for one_liner in one_liners:
        assert one_liner not in printed
    # smoothbench.tools.command_line.tool_parser's epilog: one example a line
    assert "\nexamples:\n" in printed, f"{script}: make its parser with cli.tool_parser"
    examples = printed.split("\nexamples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  {script}") for line in examples)
    assert "--version" in printed


def test_each_tool_has_its_own_description(capsys):
    descriptions = {}
    for script in SCRIPTS:
        printed = run_script(script, ["--help"], capsys)
        # the paragraph after the usage lines
        descriptions[script] = printed.split("\n\n")[1]
        assert len(descriptions[script].split()) >= 8
    assert len(set(descriptions.values())) == len(SCRIPTS)


def test_cost_help_names_its_per_run_rows(capsys):
    printed = run_script("smoothbench-cost", ["--help"], capsys)
    assert "--per-run" in printed and "per dataset" in printed
