# Data stage: get each dataset into the TFDS data dir, then into uint8 arrays + mean.


rule download:
    """Build the dataset in the TFDS data dir (or check it is there). Runs on the submit
    host: cluster compute nodes often have no internet. Whether it may use the network
    is read from the config by the script, not passed as a param: changing it must not
    make Snakemake redo finished downloads and preparations. A study's own folder of
    images is read here whole (its files are the inputs; the record holds their sha256),
    so a changed file prepares that dataset again, and nothing else."""
    input:
        images=lambda wildcards: STUDY.source_files(wildcards.dataset),
    output:
        record=f"{RESULTS}/downloads/{{dataset}}.json",
    log:
        f"{LOGS}/download/{{dataset}}.log",
    localrule: True
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=4000,
    params:
        settings=lambda wildcards: STUDY.download_settings(wildcards.dataset),
    script:
        "../scripts/download.py"


rule prepare:
    """Square-crop (Decathlon), store uint8 images + labels, the per-pixel training
    mean and a manifest with sha256 of every array; memory-mapped by training."""
    input:
        record=rules.download.output.record,
    output:
        **prepared_files("{dataset}"),
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    conda:
        ENVIRONMENT
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        settings=lambda wildcards: STUDY.data_settings(wildcards.dataset),
    script:
        "../scripts/prepare.py"
