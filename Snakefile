# smoothbench: Mezzini, "Empirical study on label smoothing in neural networks", as a workflow.
# The workflow itself is workflow/Snakefile (the layout snakedeploy and Snakemake modules
# expect); this file runs it from the checkout (`snakemake --cores all` here), with its
# rule all as the default target, as if it were this file's own.
workflow.include("workflow/Snakefile", overwrite_default_target=True)
