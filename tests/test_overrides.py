"""Command-line overrides, as Snakemake users write them: ``--config 'seeds=[0,1]'
'protocol={epochs: 3}'`` reaches the config as strings (Snakemake reads a nested value
with YAML's base loader), and the schema types them (smoothbench.config.
read_typed_strings); a wrong one is refused naming the key. Every console script that
reads a study takes the same ``--configfile`` (several, layered) and ``--config``
(smoothbench.tools.command_line.add_study_arguments) and resolves the study Snakemake plans."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from conftest import REPOSITORY, demo_command
from snakemake.cli import parse_config
from test_cli import SCRIPTS, entry_point

from smoothbench.config import ConfigError, merge_layers, read_config_files
from smoothbench.study import load_study
from smoothbench.tools import command_line

DEMO = REPOSITORY / "config" / "demo.yaml"
PAPER = REPOSITORY / "config.yaml"
# The demo plans 5 gammas, 1 alpha and 1 LS++ value per seed (config/demo.yaml).
DEMO_RUNS_PER_SEED = 7


def overridden(*entries: str, files=(DEMO,)):
    """The study of ``files`` with ``--config entries``, as Snakemake hands them over."""
    return load_study(merge_layers(read_config_files(files), parse_config(entries)))


def test_snakemake_passes_nested_values_as_strings():
    """What this module is about: the strict schema alone refused these."""
    assert parse_config(["seeds=[0,1]", "protocol={epochs: 3}"]) == {
        "seeds": ["0", "1"],
        "protocol": {"epochs": "3"},
    }
    # a top-level scalar is typed by Snakemake itself, but true stays a string
    assert parse_config(["equivalence_tolerance=0.25", "x_y=true"]) == {
        "equivalence_tolerance": 0.25,
        "x_y": "true",
    }


@pytest.mark.parametrize(
    ("entry", "key", "wanted"),
    [
        ("seeds=[0,1]", ("seeds",), [0, 1]),
        ("seeds=[3]", ("seeds",), [3]),
        ("protocol={epochs: 3}", ("protocol", "epochs"), 3),
        ("protocol={gammas: [0.9, 1.0]}", ("protocol", "gammas"), [0.9, 1.0]),
        ("protocol={gammas: grid}", ("protocol", "gammas"), "grid"),
        (
            "protocol={optimizer: {learning_rate: 1e-3}}",
            ("protocol", "optimizer", "learning_rate"),
            0.001,
        ),
        (
            "protocol={optimizer: {schedule: [{after_epoch: 2, factor: 0.5}]}}",
            ("protocol", "optimizer", "schedule"),
            [{"after_epoch": 2, "factor": 0.5}],
        ),
        (
            "protocol={augmentation: {horizontal_flip: true}}",
            ("protocol", "augmentation", "horizontal_flip"),
            True,
        ),
        ("data={download: false}", ("data", "download"), False),
        ("compute={jit_compile: true}", ("compute", "jit_compile"), True),
        ("compute={jit_compile: auto}", ("compute", "jit_compile"), "auto"),
        ("compute={precision: float32}", ("compute", "precision"), "float32"),
        ("compute={threads_per_job: 2}", ("compute", "threads_per_job"), 2),
        ("experiments={digits: {epochs: 2}}", ("experiments", "digits", "epochs"), 2),
        (
            "methods={alpha: {values: [0.1, 0.2], experiments: [digits]}}",
            ("methods", "alpha"),
            {"values": [0.1, 0.2], "experiments": ["digits"]},
        ),
        (
            "methods={lspp: {experiments: all}}",
            ("methods", "lspp", "experiments"),
            "all",
        ),
        ("results_folder=results/mine", ("results_folder",), "results/mine"),
        ("data={tfds_data_dir: 123}", ("data", "tfds_data_dir"), "123"),
        ("equivalence_tolerance=0.25", ("equivalence_tolerance",), 0.25),
        ("tables={calibration_epoch: final}", ("tables", "calibration_epoch"), "final"),
    ],
)
def test_an_override_is_typed_as_a_config_file_types_it(entry, key, wanted):
    config = overridden(entry).config
    for part in key:
        config = config[part]
    assert config == wanted
    assert type(config) is type(wanted)


@pytest.mark.parametrize("written", ["null", "Null", "NULL", "~", "", "~/tfds", "/x/y"])
def test_a_tfds_data_dir_override_agrees_with_a_config_file(written, tmp_path):
    """YAML's null (null, ~, nothing) is null on the command line too, not a folder
    named null or ~; a path keeps its ~, expanded where it is used, as a file's is."""
    layer = tmp_path / "layer.yaml"
    layer.write_text(f"data: {{tfds_data_dir: {written}}}\n")
    from_file = load_study(read_config_files([DEMO, layer]))
    from_command_line = overridden(f"data={{tfds_data_dir: {written}}}")
    wanted = yaml.safe_load(layer.read_text())["data"]["tfds_data_dir"]
    assert from_command_line.config["data"]["tfds_data_dir"] == wanted
    assert from_file.config["data"]["tfds_data_dir"] == wanted
    assert from_command_line.download_settings("digits") == (
        from_file.download_settings("digits")
    )
    # null: TFDS's own default ($TFDS_DATA_DIR, else ~/tensorflow_datasets)
    if wanted is None:
        assert from_command_line.download_settings("digits")["tfds_data_dir"] is None


def test_overrides_reach_the_runs_and_their_settings():
    study = overridden("seeds=[0]", "protocol={epochs: 3}")
    assert study.seeds == [0]
    assert len(study.runs()) == DEMO_RUNS_PER_SEED
    assert study.experiments["digits"].epochs == 3
    # an experiment of the command line, beside the demo's own
    study = overridden("experiments={mine: {dataset: digits, gammas: [1.0]}}")
    assert set(study.experiments) == {"digits", "mine"}
    assert study.experiments["mine"].gammas == (1.0,)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("seeds=[zero]", "config key 'seeds[0]': 'zero' is not of type 'integer'"),
        ("seeds=[0, 0]", "config key 'seeds': lists one value twice"),
        (
            "protocol={epochs: three}",
            "config key 'protocol.epochs': 'three' is not of type 'integer'",
        ),
        (
            "protocol={epochs: 3.5}",
            "config key 'protocol.epochs': 3.5 is not an integer",
        ),
        ("protocol={epochs: 0}", "config key 'protocol.epochs'"),
        # no YAML: the value at fault is the whole mapping
        ("protocol={gammas: [0.9, }", "config key 'protocol': '{gammas: [0.9, }'"),
        ("protocol={gammas: []}", "config key 'protocol.gammas': the list is empty"),
        (
            "protocol={optimizer: {learning_rate: fast}}",
            "protocol.optimizer.learning_rate",
        ),
        ("compute={precision: float64}", "config key 'compute.precision'"),
        ("compute={gpus_per_job: one}", "config key 'compute.gpus_per_job'"),
        ("data={download: maybe}", "config key 'data.download'"),
        (
            "experiments={digits: {epochs: [1]}}",
            "config key 'experiments.digits.epochs'",
        ),
        ("protocol={epoch: 3}", "config key 'protocol.epoch' is not a known key"),
    ],
)
def test_a_wrong_override_is_refused_naming_its_key(entry, message):
    with pytest.raises(ConfigError) as refused:
        overridden(entry)
    assert message in str(refused.value)


def test_values_of_a_config_file_are_left_as_written():
    """Strings the schema takes as strings stay strings; typed values never change."""
    config = yaml.safe_load(DEMO.read_text())
    config["results_folder"] = "true"  # a folder named true, not a boolean
    study = load_study(config)
    assert study.config["results_folder"] == "true"
    assert study.config["seeds"] == [0, 1]


def test_the_fallback_parser_reads_config_as_snakemake_does():
    entries = [
        "seeds=[0,1]",
        "protocol={epochs: 3, gammas: [0.9, 1.0]}",
        "equivalence_tolerance=0.25",
        "results_folder=results/mine",
        "flag_a=True",
        "flag_b=true",
        "empty_value=",
        "text_value=a: b: c",
    ]
    assert command_line.parse_config_entries(entries) == parse_config(entries)
    for wrong in (["no_equals_sign"], ["9starts=1"]):
        with pytest.raises(ValueError):
            parse_config(wrong)
        with pytest.raises(ValueError):
            command_line.parse_config_entries(wrong)


# the data tool reads no study, and the profile tool writes a file into a folder
STUDY_TOOLS = sorted(set(SCRIPTS) - {"smoothbench-data", "smoothbench-profile"})


@pytest.mark.parametrize("script", STUDY_TOOLS)
def test_each_tool_takes_snakemakes_configfile_and_config(script, capsys):
    with pytest.raises(SystemExit):
        entry_point(script)(["--help"])
    printed = capsys.readouterr().out
    assert "--configfile FILE [FILE ...]" in printed
    assert "--config KEY=VALUE [KEY=VALUE ...]" in printed


# What each tool needs besides the study to get as far as reading it.
TOOL_ARGUMENTS = {
    "smoothbench-cost": ["--rate", "resnet_v1-20@8=1000"],
    "smoothbench-retire": ["--experiments", "digits", "--dry-run"],
    "smoothbench-tune": ["--list"],
}


@pytest.mark.parametrize("script", STUDY_TOOLS)
def test_each_tool_refuses_a_wrong_override_naming_its_key(
    script, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    arguments = ["--configfile", str(DEMO), "--config", "seeds=[zero]"]
    try:
        code = entry_point(script)(arguments + TOOL_ARGUMENTS.get(script, []))
    except SystemExit as stopped:
        code = stopped.code
    # one way to report a user's error in every tool (smoothbench.tools.command_line)
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"{script}: error: ") and "config key 'seeds[0]'" in error


def test_the_tools_follow_a_layered_study_and_its_overrides(
    tmp_path, monkeypatch, capsys
):
    """config.yaml with the demo over it: the paper's experiments and the demo's
    digits, the demo's seeds and results folder, config.yaml's gpus_per_job: 1; then
    --config over both. The tools resolve the study Snakemake plans."""
    monkeypatch.chdir(tmp_path)
    layered = ["--configfile", str(PAPER), str(DEMO)]
    override = ["--config", "seeds=[0]", "experiments={mine: {dataset: digits}}"]

    assert entry_point("smoothbench-status")([*layered, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["results_folder"] == "results/demo"
    experiments = {run["experiment"] for run in status["runs"]}
    assert {"digits", "svhn", "imagenet12_a"} <= experiments
    all_runs = len(status["runs"])

    assert entry_point("smoothbench-status")([*layered, *override, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {run["seed"] for run in status["runs"]} == {0}
    assert "mine" in {run["experiment"] for run in status["runs"]}
    assert len(status["runs"]) == all_runs // 2 + DEMO_RUNS_PER_SEED

    # the same study in the cost tool: every experiment of both files, priced
    rates = ["--rate", "resnet_v1-20@8=1000", "--rate", "resnet_v2-83@72=900"]
    assert entry_point("smoothbench-cost")([*layered, *override, *rates]) == 0
    bill = capsys.readouterr().out
    total = re.search(r"total: ([\d,]+) training jobs", bill)
    assert int(total.group(1).replace(",", "")) == len(status["runs"])
    assert re.search(r"^mine\s+digits", bill, re.MULTILINE)

    # the retire tool knows the command line's experiment; without it, refuses it
    retired = ["--experiments", "mine", "--dry-run"]
    assert entry_point("smoothbench-retire")([*layered, *override, *retired]) == 0
    assert "no run of the study matches" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        entry_point("smoothbench-retire")([*layered, *retired])
    assert "--experiments mine: unknown (the study has" in capsys.readouterr().err

    # the tables tool names the study it read
    assert entry_point("smoothbench-tables")([*layered, *override]) == 2
    error = capsys.readouterr().err
    assert f"none of the {len(status['runs'])} runs of" in error
    assert "--config seeds=[0]" in error


@pytest.mark.workflow
def test_a_dry_run_with_overrides_plans_the_overridden_study(tmp_path):
    process = subprocess.run(
        demo_command(
            tmp_path, "--dry-run", "--config", "seeds=[0]", "protocol={epochs: 3}"
        ),
        capture_output=True,
        text=True,
    )
    assert process.returncode == 0, process.stdout + process.stderr
    planned = re.findall(
        r"output: \S+/runs/digits/(\w+)~([\d.]+)/seed~(\d+)/", process.stdout
    )
    assert len(planned) == DEMO_RUNS_PER_SEED
    assert {seed for _, _, seed in planned} == {"0"}
    assert re.search(r"^train\s+6$", process.stdout, re.MULTILINE)
    assert re.search(r"^train_lspp\s+1$", process.stdout, re.MULTILINE)


@pytest.mark.workflow
def test_a_dry_run_refuses_a_wrong_override_naming_its_key(tmp_path):
    process = subprocess.run(
        demo_command(
            tmp_path, "--dry-run", "--config", "seeds=[zero]", "protocol={epochs: 3.5}"
        ),
        capture_output=True,
        text=True,
    )
    assert process.returncode != 0
    output = process.stdout + process.stderr
    assert "config key 'seeds[0]': 'zero' is not of type 'integer'" in output
    assert "config key 'protocol.epochs': 3.5 is not an integer" in output


@pytest.mark.workflow
@pytest.mark.parametrize(
    "entry, last_line",
    [
        ("seeds=[-1]", "  config key 'seeds[0]': -1 is less than the minimum of 0"),
        ("sedes=[0]", "  config key 'sedes' is not a known key"),
    ],
)
def test_a_config_error_ends_with_its_message(tmp_path, entry, last_line):
    """Snakemake follows an error raised while it reads the workflow with the lines of
    the workflow it passed through ('  File ".../common.smk", line 67, in <module>');
    a config error's message says all there is, so it ends the output."""
    process = subprocess.run(
        demo_command(tmp_path, "--dry-run", "--config", entry),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.returncode != 0
    lines = [line for line in process.stdout.splitlines() if line.strip()]
    assert lines[-1].startswith(last_line), process.stdout
    assert lines[-2] == "invalid config:", process.stdout
    assert not [line for line in lines if line.lstrip().startswith('File "')]


def test_the_tools_without_a_study_report_a_users_error_the_same_way(tmp_path, capsys):
    """Status 2 and '<tool>: error: ...', as every study tool above."""
    assert entry_point("smoothbench-data")(["sources", "no_such_dataset"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("smoothbench-data: error: ") and "no_such_dataset" in error
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    assert entry_point("smoothbench-profile")([str(a_file)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("smoothbench-profile: error: "), error
