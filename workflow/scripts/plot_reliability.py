"""Snakemake adapter: rule plot_reliability -> smoothbench.experiment_plots.write_reliability."""

from pathlib import Path

from smoothbench.experiment_plots import write_reliability
from smoothbench.runs_table import read_runs_table
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    stem = Path(snakemake.output.png[: -len(".png")])
    study, experiment = load_study(snakemake.config), snakemake.wildcards.experiment
    write_reliability(
        study,
        experiment,
        read_runs_table(snakemake.input.runs),
        stem,
        snakemake.params.calibration_epoch,
    )
