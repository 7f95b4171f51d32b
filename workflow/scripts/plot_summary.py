"""Snakemake adapter: rule plot_summary -> smoothbench.plots.write_summary_plots (from runs.csv)."""

from pathlib import Path

from smoothbench.plots import write_summary_plots
from smoothbench.runs_table import read_runs_table
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    write_summary_plots(
        load_study(snakemake.config),
        read_runs_table(snakemake.input.runs),
        Path(snakemake.output.accuracy).parent,
    )
