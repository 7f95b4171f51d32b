"""Snakemake adapter: rule train -> smoothbench.training.train."""

from pathlib import Path

from smoothbench.config import load_study
from smoothbench.training import train
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    compute = load_study(snakemake.config).compute_settings() | {"threads_per_job": snakemake.threads}
    prepared = Path(snakemake.input.manifest).parent
    train(snakemake.params.settings, compute, prepared, Path(snakemake.output.metrics).parent)
