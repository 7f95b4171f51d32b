"""Snakemake adapter: rule plot_training_curves -> smoothbench.results.run_plots.write_training_curves."""

from pathlib import Path

from smoothbench.pipeline.jobs import logged
from smoothbench.results.collection import read_runs_table
from smoothbench.results.run_plots import write_training_curves
from smoothbench.study import load_study

with logged(snakemake.log[0]):
    stem = Path(snakemake.output.png[: -len(".png")])
    write_training_curves(
        load_study(snakemake.config),
        snakemake.wildcards.experiment,
        read_runs_table(snakemake.input.runs),
        stem,
    )
