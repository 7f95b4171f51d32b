"""Snakemake adapter: rule aggregate -> smoothbench.tables.write_tables (from runs.csv)."""

from pathlib import Path

from smoothbench.runs_table import read_runs_table
from smoothbench.study import load_study
from smoothbench.tables import write_tables
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    folder = Path(snakemake.output.table1_csv).parent
    tolerance, epoch = snakemake.params.tolerance, snakemake.params.calibration_epoch
    write_tables(
        load_study(snakemake.config),
        read_runs_table(snakemake.input.runs),
        folder,
        tolerance,
        calibration_epoch=epoch,
    )
