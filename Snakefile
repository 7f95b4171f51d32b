# smoothbench: Mezzini, "Empirical study on label smoothing in neural networks", as a workflow.
# Stages live in workflow/rules/; the config is checked against the package's schema,
# src/smoothbench/schemas/config.schema.yaml, before anything is planned.
from snakemake.utils import min_version

min_version("9.0")


# A config file names a whole study (the schema fills every key it leaves out), so
# config.yaml, the paper's study, is read only when no --configfile is given: the
# demo's config replaces it rather than being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/results.smk"


wildcard_constraints:
    dataset="|".join(sorted(DATASETS, key=len, reverse=True)),
    experiment="|".join(sorted(STUDY.experiments, key=len, reverse=True)),
    method="gamma|alpha|lspp",
    value=r"[0-9]+\.[0-9]+",
    seed=r"[0-9]+",


rule all:
    default_target: True
    input:
        final_targets(),
