"""Snakemake adapter: rule plot_training_curves -> smoothbench.experiment_plots.write_training_curves."""

from pathlib import Path

from smoothbench.experiment_plots import write_training_curves
from smoothbench.runs_table import read_runs_table
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    stem = Path(snakemake.output.png[: -len(".png")])
    write_training_curves(
        load_study(snakemake.config),
        snakemake.wildcards.experiment,
        read_runs_table(snakemake.input.runs),
        stem,
    )
