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
        unpack(
            lambda wildcards: training_inputs(experiment_dataset(wildcards.experiment))
        ),
    output:
        history=f"{RUNS}/{{experiment}}/{{method}}~{{value}}/seed~{{seed}}/history.csv",
        metrics=f"{RUNS}/{{experiment}}/{{method}}~{{value}}/seed~{{seed}}/metrics.json",
    log:
        f"{LOGS}/train/{{experiment}}/{{method}}~{{value}}/seed~{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{experiment}}/{{method}}~{{value}}/seed~{{seed}}.tsv"
    wildcard_constraints:
        method="gamma|alpha",
    conda:
        ENVIRONMENT
    threads: STUDY.config["compute"]["threads_per_job"]
    resources:
        gpu=lambda wildcards: STUDY.train_resources(wildcards.experiment)["gpu"],
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
        history=f"{RUNS}/{{experiment}}/{{method}}~{{value}}/seed~{{seed}}/history.csv",
        c_matrix=f"{RUNS}/{{experiment}}/{{method}}~{{value}}/seed~{{seed}}/c_matrix.npy",
        metrics=f"{RUNS}/{{experiment}}/{{method}}~{{value}}/seed~{{seed}}/metrics.json",
    wildcard_constraints:
        method="lspp",
