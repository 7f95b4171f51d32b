"""Snakemake adapter: rule aggregate -> smoothbench.results.paper_tables.write_tables (from runs.csv)."""

from pathlib import Path

from smoothbench.pipeline.jobs import logged
from smoothbench.results.collection import read_runs_table
from smoothbench.results.paper_tables import write_tables
from smoothbench.study import load_study

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
