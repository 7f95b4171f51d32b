# Results stage: every finished run in one tidy table (runs.csv), the paper's Tables 1-3
# beside the paper's numbers, the analysis beyond the paper (paired differences over
# seeds, methods, calibration), and the plots. Only collect_runs reads the runs'
# metrics.json for their numbers (checked once, against the schema and the config); the
# tables, the summary plot and the front page read runs.csv, and the per-experiment
# plots find their runs in it. Nothing here trains: deleting a table or a plot replans
# only the rule that writes it (and, for the accuracy plot, the front page that embeds
# it). Unlike training, these cheap rules follow the code: params.code is the content
# hash of the package and the scripts, so an edit (not a mere touch) to them remakes
# runs.csv, the tables and plots.

from smoothbench.results.collection import RUNS_FILE

# One row per finished run: its numbers, the compute it used, the file they came from.
RUNS_TABLE = f"{RESULTS}/{RUNS_FILE}"


rule collect_runs:
    """Every run's metrics.json, checked against the schema and the config, in one
    tidy table: runs.csv, one row per run (results/README.md lists its columns)."""
    input:
        metrics=lambda wildcards: all_run_files("metrics"),
    output:
        runs=RUNS_TABLE,
    log:
        f"{LOGS}/collect_runs.log",
    localrule: True
    conda:
        RESULTS_ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=RESULTS_CODE,
        calibration_epoch=STUDY.config["tables"]["calibration_epoch"],
    script:
        "../scripts/collect_runs.py"


rule aggregate:
    """Tables 1-3 (csv with every seed, md, tex, html), the comparison with the paper's
    printed tables, and the paired-difference, methods and calibration tables, from
    runs.csv."""
    input:
        runs=RUNS_TABLE,
        paper_tables=PAPER_TABLES,
        paper_table3=PAPER_TABLE3,
    output:
        **table_outputs(),
    log:
        f"{LOGS}/aggregate.log",
    localrule: True
    conda:
        RESULTS_ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=RESULTS_CODE,
        tolerance=STUDY.config["tables"]["paper_check_tolerance"],
        calibration_epoch=STUDY.config["tables"]["calibration_epoch"],
    script:
        "../scripts/aggregate.py"


rule front_page:
    """The page the report opens on (workflow/report/workflow.rst pastes it in): Table 3
    beside the paper, the accuracy-vs-gamma figure embedded, and the paper's Table 3
    replayed from its Tables 1-2; one HTML fragment, from the same computation as the
    tables (runs.csv)."""
    input:
        runs=RUNS_TABLE,
        paper_tables=PAPER_TABLES,
        paper_table3=PAPER_TABLE3,
        figure=f"{PLOTS}/accuracy_vs_gamma.png",
    output:
        report(
            FRONT_PAGE,
            caption="../report/front_page.rst",
            category="Accuracy",
            subcategory="Tables",
            labels={"table": "Front page: Table 3 beside the paper"},
        ),
    log:
        f"{LOGS}/front_page.log",
    localrule: True
    conda:
        RESULTS_ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=RESULTS_CODE,
        tolerance=STUDY.config["tables"]["paper_check_tolerance"],
    script:
        "../scripts/front_page.py"


rule plot_summary:
    """Accuracy against gamma per data set (with the uniform-alpha and LS++ runs at
    their equivalent gamma), and the gain over gamma = 1, ours beside the paper's,
    from runs.csv."""
    input:
        runs=RUNS_TABLE,
        paper_tables=PAPER_TABLES,
    output:
        accuracy=report(
            f"{PLOTS}/accuracy_vs_gamma.png",
            caption="../report/accuracy_vs_gamma.rst",
            category="Accuracy",
            subcategory="Figures",
            labels={"figure": "accuracy against gamma"},
        ),
        accuracy_pdf=f"{PLOTS}/accuracy_vs_gamma.pdf",
        gain=report(
            f"{PLOTS}/gain_over_baseline.png",
            caption="../report/gain_over_baseline.rst",
            category="Accuracy",
            subcategory="Figures",
            labels={"figure": "gain over gamma = 1"},
        ),
        gain_pdf=f"{PLOTS}/gain_over_baseline.pdf",
    log:
        f"{LOGS}/plots/summary.log",
    localrule: True
    conda:
        RESULTS_ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=RESULTS_CODE,
    script:
        "../scripts/plot_summary.py"


rule plot_training_curves:
    """Loss and accuracy per epoch of one experiment's gammas (train and validation):
    the runs found in runs.csv, each from its history.csv."""
    input:
        runs=RUNS_TABLE,
        histories=lambda wildcards: experiment_run_files(
            wildcards.experiment, "history", "gamma"
        ),
    output:
        png=report(
            f"{PLOTS}/training_curves/{{experiment}}.png",
            caption="../report/training_curves.rst",
            category="Training curves",
            subcategory="Figures",
            labels={"data set": "{experiment}"},
        ),
        pdf=f"{PLOTS}/training_curves/{{experiment}}.pdf",
    log:
        f"{LOGS}/plots/training_curves/{{experiment}}.log",
    localrule: True
    conda:
        RESULTS_ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=RESULTS_CODE,
    script:
        "../scripts/plot_training_curves.py"


rule plot_reliability:
    """Reliability diagrams of one experiment: gamma = 1, the best gamma, and the best
    uniform alpha and LS++ where run (seeds pooled), each over its share of examples:
    the runs chosen from runs.csv, their bins from their metrics.json."""
    input:
        runs=RUNS_TABLE,
        metrics=lambda wildcards: experiment_run_files(wildcards.experiment, "metrics"),
    output:
        png=report(
            f"{PLOTS}/reliability/{{experiment}}.png",
            caption="../report/reliability.rst",
            category="Calibration",
            subcategory="Figures",
            labels={"data set": "{experiment}", "figure": "reliability"},
        ),
        pdf=f"{PLOTS}/reliability/{{experiment}}.pdf",
    log:
        f"{LOGS}/plots/reliability/{{experiment}}.log",
    localrule: True
    conda:
        RESULTS_ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=RESULTS_CODE,
        calibration_epoch=STUDY.config["tables"]["calibration_epoch"],
    script:
        "../scripts/plot_reliability.py"


rule plot_c_matrix:
    """Label Smoothing++'s learned C of one experiment and alpha, mean over seeds, with
    the class names of the prepared data; colours span the off-diagonal values; its
    title says under what code and compute those runs were made (runs.csv)."""
    input:
        runs=RUNS_TABLE,
        matrices=lambda wildcards: lspp_matrix_files(
            wildcards.experiment, wildcards.value
        ),
        manifest=lambda wildcards: prepared_files(
            experiment_dataset(wildcards.experiment)
        )["manifest"],
    output:
        png=report(
            f"{PLOTS}/c_matrix/{{experiment}}/lspp~{{value}}.png",
            caption="../report/c_matrix.rst",
            category="Calibration",
            subcategory="Figures",
            labels={"data set": "{experiment}", "figure": "LS++ C, alpha {value}"},
        ),
        pdf=f"{PLOTS}/c_matrix/{{experiment}}/lspp~{{value}}.pdf",
    log:
        f"{LOGS}/plots/c_matrix/{{experiment}}/lspp~{{value}}.log",
    localrule: True
    conda:
        RESULTS_ENVIRONMENT
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=RESULTS_CODE,
    script:
        "../scripts/plot_c_matrix.py"
