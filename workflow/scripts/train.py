"""Snakemake adapter: rule train -> smoothbench.training.train, on a claimed GPU slot."""

from pathlib import Path

from smoothbench.gpu_slots import claimed_slots, gpus_given
from smoothbench.study import load_study
from smoothbench.training import say, train
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    compute = load_study(snakemake.config).compute_settings()
    gpus = snakemake.resources.get("gpu", 0)
    with claimed_slots(gpus, log=say, runs_per_gpu=compute["runs_per_gpu"]) as slots:
        compute |= {
            "threads_per_job": snakemake.threads,
            "gpus_given": gpus_given(gpus, slots),
        }
        train(
            snakemake.params.settings,
            compute,
            Path(snakemake.input.manifest).parent,
            Path(snakemake.output.metrics).parent,
        )
