"""Snakemake adapter: rule front_page -> smoothbench.tables.write_front_page."""

from smoothbench.study import load_study
from smoothbench.tables import write_front_page
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    write_front_page(
        load_study(snakemake.config),
        snakemake.input.metrics,
        snakemake.input.figure,
        snakemake.output[0],
        snakemake.params.tolerance,
        calibration_epoch=snakemake.params.calibration_epoch,
    )
