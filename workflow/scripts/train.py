"""Snakemake adapter: rule train -> smoothbench.training.train, on a claimed GPU slot."""

from pathlib import Path

from smoothbench.gpu_slots import claimed_slots
from smoothbench.study import load_study
from smoothbench.training import say, train
from smoothbench.workflow_support import logged

with (
    logged(snakemake.log[0]),
    claimed_slots(snakemake.resources.get("gpu", 0), log=say),
):
    compute = load_study(snakemake.config).compute_settings() | {
        "threads_per_job": snakemake.threads
    }
    prepared = Path(snakemake.input.manifest).parent
    train(
        snakemake.params.settings,
        compute,
        prepared,
        Path(snakemake.output.metrics).parent,
    )
