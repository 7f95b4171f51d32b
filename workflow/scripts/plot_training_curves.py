"""Snakemake adapter: rule plot_training_curves -> smoothbench.plots.write_training_curves."""

from pathlib import Path

from smoothbench.plots import write_training_curves
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    stem = Path(snakemake.output.png[: -len(".png")])
    write_training_curves(
        load_study(snakemake.config),
        snakemake.wildcards.experiment,
        snakemake.input.metrics,
        stem,
    )
