"""Snakemake adapter: rule plot_reliability -> smoothbench.plots.write_reliability."""

from pathlib import Path

from smoothbench.plots import write_reliability
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    stem = Path(snakemake.output.png[: -len(".png")])
    study, experiment = load_study(snakemake.config), snakemake.wildcards.experiment
    write_reliability(
        study,
        experiment,
        snakemake.input.metrics,
        stem,
        snakemake.params.calibration_epoch,
    )
