# Training stage: one job per (experiment, method, value, seed), resumable from its last
# epoch. method is gamma (eq. 7, the paper's), alpha (uniform smoothing) or lspp (Label
# Smoothing++, whose jobs also write the learned matrix C: rule train_lspp).


rule train:
    """Train one run of the protocol with one smoothing method on the prepared arrays;
    write history.csv and, last, metrics.json. A killed job resumes from run_folder/checkpoint/ when run
    again; a job killed after it finished republishes its outputs from
    run_folder/.finished/ instead of training again. What retrains a run: its settings
    (params) and the content of its prepared data (the manifest, compared by checksum;
    the arrays' mtimes are ignored). How it runs (devices, threads) is read from the
    config by the script, not passed as a param: changing it must not retrain finished
    runs. Code changes do not retrain either (profiles/default sets the rerun triggers).
    """
    input:
        say_the_plan,
        unpack(
            lambda wildcards: training_inputs(experiment_dataset(wildcards.experiment))
        ),
    output:
        history=f"{RUN_FOLDER}/{HISTORY_FILE}",
        metrics=f"{RUN_FOLDER}/{METRICS_FILE}",
    log:
        TRAIN_LOG,
    benchmark:
        TRAIN_BENCHMARK
    wildcard_constraints:
        method="gamma|alpha",
    conda:
        GPU_ENVIRONMENT if STUDY.config["compute"]["gpus_per_job"] else ENVIRONMENT
    threads: STUDY.config["compute"]["threads_per_job"]
    resources:
        gpu=lambda wildcards: train_gpus(wildcards, "train"),
        mem_mb=lambda wildcards: STUDY.train_resources(wildcards.experiment)["mem_mb"],
        runtime=lambda wildcards, attempt: STUDY.train_resources(
            wildcards.experiment, attempt
        )["runtime"],
    params:
        settings=lambda wildcards: train_settings(wildcards),
    script:
        "../scripts/train.py"


use rule train as train_lspp with:
    output:
        history=f"{RUN_FOLDER}/{HISTORY_FILE}",
        c_matrix=f"{RUN_FOLDER}/{C_MATRIX_FILE}",
        metrics=f"{RUN_FOLDER}/{METRICS_FILE}",
    wildcard_constraints:
        method="lspp",
    # the same resources, each rule's own `gpu` (train_gpus reads its profile entry)
    resources:
        gpu=lambda wildcards: train_gpus(wildcards, "train_lspp"),
        mem_mb=lambda wildcards: STUDY.train_resources(wildcards.experiment)["mem_mb"],
        runtime=lambda wildcards, attempt: STUDY.train_resources(
            wildcards.experiment, attempt
        )["runtime"],
