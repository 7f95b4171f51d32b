"""Snakemake adapter: rule collect_runs -> smoothbench.runs_table.write_runs_table."""

from smoothbench.runs_table import write_runs_table
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    write_runs_table(
        load_study(snakemake.config),
        snakemake.input.metrics,
        snakemake.output.runs,
        snakemake.params.calibration_epoch,
    )
