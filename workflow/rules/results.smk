# Results stage: the paper's Tables 1-3 beside the paper's numbers, and the plots.
# Everything here reads the runs' metrics.json / history.csv and never trains: deleting
# a table or a plot replans only the rule that writes it.


rule aggregate:
    """Tables 1-3 (csv with every seed, md, tex, html) and the comparison with the
    paper's printed tables, from every run's metrics.json."""
    input:
        metrics=lambda wildcards: all_run_files("metrics"),
        paper_tables=PAPER_TABLES,
        paper_table3=PAPER_TABLE3,
    output:
        **table_outputs(),
    log:
        f"{LOGS}/aggregate.log",
    localrule: True
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tolerance=STUDY.config["tables"]["paper_check_tolerance"],
    script:
        "../scripts/aggregate.py"


rule plot_summary:
    """Accuracy against gamma per data set, and the gain over gamma = 1, ours beside
    the paper's."""
    input:
        metrics=lambda wildcards: all_run_files("metrics"),
        paper_tables=PAPER_TABLES,
    output:
        accuracy=report(
            f"{PLOTS}/accuracy_vs_gamma.png",
            caption="../report/accuracy_vs_gamma.rst",
            category="Plots",
            labels={"figure": "accuracy against gamma"},
        ),
        accuracy_pdf=f"{PLOTS}/accuracy_vs_gamma.pdf",
        gain=report(
            f"{PLOTS}/gain_over_baseline.png",
            caption="../report/gain_over_baseline.rst",
            category="Plots",
            labels={"figure": "gain over gamma = 1"},
        ),
        gain_pdf=f"{PLOTS}/gain_over_baseline.pdf",
    log:
        f"{LOGS}/plots/summary.log",
    localrule: True
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_summary.py"


rule plot_training_curves:
    """Loss and accuracy per epoch of one experiment's gammas (train and validation)."""
    input:
        metrics=lambda wildcards: experiment_run_files(wildcards.experiment, "metrics"),
        histories=lambda wildcards: experiment_run_files(
            wildcards.experiment, "history"
        ),
    output:
        png=report(
            f"{PLOTS}/training_curves/{{experiment}}.png",
            caption="../report/training_curves.rst",
            category="Training curves",
            labels={"data set": "{experiment}"},
        ),
        pdf=f"{PLOTS}/training_curves/{{experiment}}.pdf",
    log:
        f"{LOGS}/plots/training_curves/{{experiment}}.log",
    localrule: True
    conda:
        ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_training_curves.py"
