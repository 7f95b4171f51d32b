"""Snakemake adapter: rule collect_runs -> smoothbench.results.collection.write_runs_table."""

from smoothbench.pipeline.jobs import logged
from smoothbench.results.collection import write_runs_table
from smoothbench.study import load_study

with logged(snakemake.log[0]):
    write_runs_table(
        load_study(snakemake.config),
        snakemake.input.metrics,
        snakemake.output.runs,
        snakemake.params.calibration_epoch,
    )
