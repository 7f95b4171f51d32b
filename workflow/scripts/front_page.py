"""Snakemake adapter: rule front_page -> smoothbench.front_page.write_front_page (from runs.csv)."""

from smoothbench.front_page import write_front_page
from smoothbench.runs_table import read_runs_table
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    write_front_page(
        load_study(snakemake.config),
        read_runs_table(snakemake.input.runs),
        snakemake.input.figure,
        snakemake.output[0],
        snakemake.params.tolerance,
    )
