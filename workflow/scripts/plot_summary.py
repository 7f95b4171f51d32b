"""Snakemake adapter: rule plot_summary -> smoothbench.plots.write_summary_plots."""

from pathlib import Path

from smoothbench.plots import write_summary_plots
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    write_summary_plots(
        load_study(snakemake.config),
        snakemake.input.metrics,
        Path(snakemake.output.accuracy).parent,
    )
