"""Snakemake adapter: rule plot_c_matrix -> smoothbench.results.run_plots.write_c_matrix."""

from pathlib import Path

from smoothbench.pipeline.jobs import logged
from smoothbench.results.collection import read_runs_table
from smoothbench.results.run_plots import write_c_matrix
from smoothbench.study import load_study

with logged(snakemake.log[0]):
    stem = Path(snakemake.output.png[: -len(".png")])
    matrices, manifest = snakemake.input.matrices, snakemake.input.manifest
    write_c_matrix(
        load_study(snakemake.config),
        snakemake.wildcards.experiment,
        snakemake.wildcards.value,
        matrices,
        manifest,
        stem,
        read_runs_table(snakemake.input.runs),
    )
