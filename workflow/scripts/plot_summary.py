"""Snakemake adapter: rule plot_summary -> smoothbench.results.summary_plots.write_summary_plots (from runs.csv)."""

from pathlib import Path

from smoothbench.pipeline.jobs import logged
from smoothbench.results.collection import read_runs_table
from smoothbench.results.summary_plots import write_summary_plots
from smoothbench.study import load_study

with logged(snakemake.log[0]):
    write_summary_plots(
        load_study(snakemake.config),
        read_runs_table(snakemake.input.runs),
        Path(snakemake.output.accuracy).parent,
    )
