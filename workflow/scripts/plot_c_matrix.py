"""Snakemake adapter: rule plot_c_matrix -> smoothbench.experiment_plots.write_c_matrix."""

from pathlib import Path

from smoothbench.experiment_plots import write_c_matrix
from smoothbench.runs_table import read_runs_table
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

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
