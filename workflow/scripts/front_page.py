"""Snakemake adapter: rule front_page -> smoothbench.results.front_page.write_front_page (from runs.csv)."""

from smoothbench.pipeline.jobs import logged
from smoothbench.results.collection import read_runs_table
from smoothbench.results.front_page import write_front_page
from smoothbench.study import load_study

with logged(snakemake.log[0]):
    write_front_page(
        load_study(snakemake.config),
        read_runs_table(snakemake.input.runs),
        snakemake.input.figure,
        snakemake.output[0],
        snakemake.params.tolerance,
    )
