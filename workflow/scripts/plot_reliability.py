"""Snakemake adapter: rule plot_reliability -> smoothbench.results.run_plots.write_reliability."""

from pathlib import Path

from smoothbench.pipeline.jobs import logged
from smoothbench.results.collection import read_runs_table
from smoothbench.results.run_plots import write_reliability
from smoothbench.study import load_study

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
