"""Snakemake adapter: rule train -> smoothbench.train.loop.train, on a claimed GPU slot."""

import dataclasses
from pathlib import Path

from smoothbench.compute.gpu_slots import claimed_slots, gpus_given
from smoothbench.pipeline.jobs import logged
from smoothbench.pipeline.ownership import checkout_identity, claim
from smoothbench.study import load_study
from smoothbench.train.loop import say, train

# A job given a GPU keeps TensorFlow's CUDA start-up lines in its log (they say why it
# cannot see the GPU); one given none, on the CPU, starts with smoothbench's own lines.
given_gpu = bool(snakemake.resources.get("gpu", 0) or snakemake.resources.get("gres"))
with logged(snakemake.log[0], gpu=given_gpu):
    study = load_study(snakemake.config)
    claim(study.runs_folder, checkout_identity())  # one checkout per runs folder
    compute = study.compute_settings(snakemake.wildcards.experiment)
    gpus = snakemake.resources.get("gpu", 0)
    # planned as a republish of a finished version (common.smk: train_gpus): no GPU
    republish_only = (
        gpus == 0 and compute.gpus_per_job > 0 and not snakemake.resources.get("gres")
    )
    with claimed_slots(gpus, log=say, runs_per_gpu=compute.runs_per_gpu) as slots:
        train(
            snakemake.params.settings,
            dataclasses.replace(
                compute,
                threads_per_job=snakemake.threads,
                gpus_given=gpus_given(gpus, slots),
            ),
            Path(snakemake.input.manifest).parent,
            Path(snakemake.output.metrics).parent,
            log_file=snakemake.log[0],
            republish_only=republish_only,
        )
