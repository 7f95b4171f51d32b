# Training stage: one job per (experiment, gamma, seed), resumable from its last epoch.


rule train:
    """Train one run of the paper's protocol on the prepared arrays; write history.csv
    and, last, metrics.json. A killed job resumes from run_folder/checkpoint/ when run
    again. How it runs (devices, threads) is read from the config by the script, not
    passed as a param: changing it must not retrain finished runs."""
    input:
        unpack(
            lambda wildcards: prepared_files(experiment_dataset(wildcards.experiment))
        ),
    output:
        history=f"{RUNS}/{{experiment}}/gamma~{{gamma}}/seed~{{seed}}/history.csv",
        metrics=f"{RUNS}/{{experiment}}/gamma~{{gamma}}/seed~{{seed}}/metrics.json",
    log:
        f"{LOGS}/train/{{experiment}}/gamma~{{gamma}}/seed~{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{experiment}}/gamma~{{gamma}}/seed~{{seed}}.tsv"
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
