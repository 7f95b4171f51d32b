import copy
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from snakemake.sourcecache import LocalSourceFile

# Run from a checkout (this file's folder is {checkout}/workflow/rules, beside
# {checkout}/src/smoothbench), the checkout's package is the one imported, here and in
# every job (smoothbench.pipeline.jobs.use_checkout): first on sys.path even when an
# install already lists it (a .pth entry comes last). Used as a module fetched from
# elsewhere (snakedeploy's github(...)), the installed smoothbench is imported.
RULES_FOLDER = workflow.current_basedir  # a LocalSourceFile here, another kind remote
LOCAL_RULES = (
    Path(RULES_FOLDER.get_path_or_uri(secret_free=True)).resolve()
    if isinstance(RULES_FOLDER, LocalSourceFile)
    else None
)
CHECKOUT = (
    LOCAL_RULES.parents[1]
    if LOCAL_RULES and (LOCAL_RULES.parents[1] / "src" / "smoothbench").is_dir()
    else None
)
SOURCE_FOLDER = str(CHECKOUT / "src") if CHECKOUT else None
if SOURCE_FOLDER:
    sys.path[:] = [SOURCE_FOLDER] + [e for e in sys.path if e != SOURCE_FOLDER]

from smoothbench.config import ConfigError
from smoothbench.study import load_study
from smoothbench import run_record
from smoothbench.data import own_datasets
from smoothbench.data.array_store import ARRAY_NAMES, MANIFEST_NAME
from smoothbench.results.paper_numbers import PAPER_CELLS_FILE, PAPER_TABLE3_FILE
from smoothbench.results.paper_tables import OUTPUT_FILES
from smoothbench.pipeline import slurm_compat
from smoothbench.pipeline.jobs import (
    code_fingerprint,
    gpu_warning,
    nvidia_gpus,
    use_checkout,
)
from smoothbench.pipeline import plan_summary
from smoothbench.pipeline.ownership import (
    ResultsOwnerError,
    check_owner,
    checkout_identity,
)

if SOURCE_FOLDER:
    use_checkout(SOURCE_FOLDER)

# With --executor slurm, a job cancelled by scancel must count as failed (and be retried);
# see smoothbench/slurm_compat.py.
slurm_compat.install()


class WithoutTraceback(logging.Filter):
    """Snakemake prints an error raised while it reads the workflow as its message
    followed by the workflow's lines the error passed through ('  File ".../common.smk",
    line 67, in <module>'). For the errors the workflow raises on purpose (a bad config,
    a runs folder of another checkout: :func:`stop`), whose message says all there is,
    this filter on Snakemake's logger drops those lines, so that the message ends the
    output; every other error keeps them."""

    FRAME = re.compile(r'\s+File ".*", line \d+, in ')

    def __init__(self):
        super().__init__()
        self.messages = []

    def filter(self, record):
        text = record.getMessage()
        if any(message in text for message in self.messages):
            lines = text.splitlines()
            while lines and self.FRAME.match(lines[-1]):
                lines.pop()
            record.msg, record.args = "\n".join(lines), ()
        return True


def snakemake_logger():
    from snakemake.logging import logger

    return logger


WITHOUT_TRACEBACK = next(
    (f for f in snakemake_logger().filters if type(f).__name__ == "WithoutTraceback"),
    None,
)
if WITHOUT_TRACEBACK is None:
    WITHOUT_TRACEBACK = WithoutTraceback()
    snakemake_logger().addFilter(WITHOUT_TRACEBACK)


def stop(error):
    """The WorkflowError that stops planning with ``error``'s message, printed without
    Snakemake's traceback lines (:class:`WithoutTraceback`)."""
    WITHOUT_TRACEBACK.messages.append(str(error))
    return WorkflowError(str(error))


def validated_study(config):
    """The config checked against the package's schema,
    src/smoothbench/schemas/config.schema.yaml (defaults filled; --config values read as
    YAML where the schema wants no string), and resolved into experiments; a bad config
    stops here, before any job is planned.
    """
    try:
        return load_study(config)
    except ConfigError as error:
        raise stop(error) from None


# The config keys the report's pages read (workflow/report/*.rst).
REPORTED_KEYS = ("seeds", "results_folder")


# The results stage (tables, plots) reruns when this changes; training never keys on code.
RESULTS_CODE = code_fingerprint(CHECKOUT)


STUDY = validated_study(config)
# The report's pages (workflow/report/*.rst) read Snakemake's config, which holds only
# the keys the config files and --config set: give them the study's own values, the
# schema's defaults included (a study that leaves `seeds` out trains seed 0, and its
# report says so). The values are the ones validated, so every job reads the same study.
for key in REPORTED_KEYS:
    config[key] = copy.deepcopy(STUDY.config[key])
# The study's own datasets as planned here, for its jobs (smoothbench.data.own_datasets).
os.environ[own_datasets.PLANNED_VARIABLE] = own_datasets.planned_record(
    STUDY.config, STUDY.dataset_specs
)

# Everything the study writes, under its config key results_folder (smoothbench.study).
RESULTS = STUDY.results_folder
RUNS = STUDY.runs_folder
# One checkout per runs folder (smoothbench.pipeline.ownership): refused here, before any job.
try:
    check_owner(RUNS, checkout_identity())
except ResultsOwnerError as error:
    raise stop(error) from None
LOGS = STUDY.logs_folder
TABLES = f"{RESULTS}/tables"
PLOTS = f"{RESULTS}/plots"
# The paper's Tables 1-2 and its printed Table 3, as data (inputs of the results stage).
PAPER_TABLES = str(PAPER_CELLS_FILE)
PAPER_TABLE3 = str(PAPER_TABLE3_FILE)
ENVIRONMENT = "../../envs/smoothbench.yaml"
# Training on GPUs needs each backend's CUDA libraries (pyproject's gpu extra).
GPU_ENVIRONMENT = "../../envs/smoothbench-gpu.yaml"
# The results rules import no TensorFlow or JAX (envs/*.yaml: requirements/conda_environments.py).
RESULTS_ENVIRONMENT = "../../envs/smoothbench-results.yaml"


def prepared_files(dataset):
    """The files of one prepared dataset (see smoothbench.data.array_store)."""
    folder = f"{STUDY.prepared_folder}/{dataset}"
    return {name: f"{folder}/{name}.npy" for name in ARRAY_NAMES} | {
        "manifest": f"{folder}/{MANIFEST_NAME}"
    }


def training_inputs(dataset):
    """prepared_files(dataset) as a training job's input: the arrays are ancient() (their
    mtimes never retrain a run), the manifest is not. The manifest holds the sha256 of
    every array and no timestamp, and Snakemake compares a small input that is newer
    than the outputs by its checksum: data prepared again identically retrains
    nothing, different data retrains."""
    return {
        name: path if name == "manifest" else ancient(path)
        for name, path in prepared_files(dataset).items()
    }


def experiment_dataset(experiment):
    """The registry name of the dataset an experiment trains on."""
    return STUDY.experiments[experiment].dataset.name


def train_gpus(wildcards, rule_name):
    """A training job's Snakemake resource `gpu`: compute.gpus_per_job; 0 when the
    profile asks for the job's GPU as a GRES of its own (set-resources: {rule}: gres:
    "shard:1", the shard GRES of jobs sharing a GPU on SLURM: docs/clusters.md), since
    the SLURM executor would add --gpus to it; and 0 when planning found the run's
    finished version of these settings, in place or kept (run_plans()): its job only
    publishes it again, in a second, and waits for no GPU."""
    profile = workflow.resource_settings.overwrite_resources.get(rule_name, {})
    if "gres" in profile:
        return 0
    folder = run_record.run_folder(
        RUNS, wildcards.experiment, wildcards.method, wildcards.value, wildcards.seed
    )
    plan = run_plans().get(folder)
    if plan is not None and plan.action in ("finished", "take back"):
        return 0
    return STUDY.train_resources(wildcards.experiment)["gpu"]


def train_settings(wildcards):
    """The settings one training run depends on (a change retrains it)."""
    try:
        return STUDY.train_settings(
            wildcards.experiment, wildcards.method, wildcards.value, int(wildcards.seed)
        )
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


_RUN_PLANS = {}


def run_plans():
    """run folder -> what its job will do (smoothbench.train.versions.RunPlan), read from the
    run folders once, while planning."""
    if not _RUN_PLANS:
        _RUN_PLANS.update(
            plan_summary.plan_runs(
                STUDY,
                lambda run: STUDY.train_settings(
                    run.experiment, run.method, run.value_text, run.seed
                ),
                lambda dataset: f"{STUDY.prepared_folder}/{dataset}",
            )
        )
    return _RUN_PLANS


def say_the_plan(wildcards):
    """Print the plan in one screen (smoothbench.pipeline.plan_summary), once, in the process
    that plans, before any job starts (a dry run too); an input function of rule all,
    so that it runs when Snakemake knows its executor and rerun triggers. No inputs."""
    if workflow.is_main_process and not _PLAN_SAID:
        _PLAN_SAID.append(True)
        cluster = not workflow.local_exec
        gpus = nvidia_gpus()
        warnings = [
            gpu_warning(STUDY),
            plan_summary.missing_gpu_warning(
                STUDY, None if gpus is None else len(gpus), cluster, workflow.dryrun
            ),
            plan_summary.rerun_warning(
                {trigger.name.lower() for trigger in workflow.rerun_triggers},
                workflow.dag_settings.force_incomplete,
            ),
        ]
        print(
            plan_summary.summary(STUDY, run_plans(), [w for w in warnings if w]),
            file=sys.stderr,
        )
    return []


_PLAN_SAID = []


def run_files(run):
    """history.csv and metrics.json (and, for Label Smoothing++, c_matrix.npy) of one
    smoothbench.study.Run (smoothbench.run_record owns the names and the grammar)."""
    return run.files(RUNS)


# One run's folder with wildcards, and its files, as the train rules name them.
RUN_FOLDER = run_record.run_folder_pattern(RUNS)
HISTORY_FILE = run_record.HISTORY_FILE
METRICS_FILE = run_record.METRICS_FILE
C_MATRIX_FILE = run_record.C_MATRIX_FILE
TRAIN_LOG = run_record.train_log_pattern(f"{LOGS}/train")
TRAIN_BENCHMARK = run_record.run_folder_pattern(f"{RESULTS}/benchmarks/train") + ".tsv"


def selected_run_files(kind, method=None, experiment=None, value_text=None):
    """The ``kind`` file ("metrics", "history", "c_matrix") of every run of the study
    that has one, narrowed to a method, an experiment and a value when given."""
    files = []
    for run in STUDY.runs(method):
        if experiment is not None and run.experiment != experiment:
            continue
        if value_text is not None and run.value_text != value_text:
            continue
        paths = run_files(run)
        if kind in paths:
            files.append(paths[kind])
    return files


def all_run_files(kind, method=None):
    """The ``kind`` file of every run of the study (of one method, when given)."""
    return selected_run_files(kind, method)


def experiment_run_files(experiment, kind, method=None):
    """The ``kind`` file of every run of one experiment (of one method, when given)."""
    return selected_run_files(kind, method, experiment)


def lspp_matrix_files(experiment, value_text):
    """c_matrix.npy of every seed of one experiment's LS++ runs at one alpha."""
    return selected_run_files("c_matrix", "lspp", experiment, value_text)


# Each table's label in the report (its csv adds " (csv)"); its caption is
# workflow/report/{table}.rst.
TABLE_CAPTIONS = {
    "table1": "Table 1",
    "table2": "Table 2",
    "table3": "Table 3",
    "comparison": "Comparison with the paper",
    "comparison_table3": "Comparison with the paper, Table 3",
    "paired_differences": "Gains over gamma = 1, paired by seed",
    "methods": "Methods side by side",
    "calibration": "Calibration",
    "provenance": "Provenance: the code and compute behind the tables",
}
# The report's categories, one scheme for tables and figures: the topic is the
# category ("Accuracy", "Seeds and methods", "Calibration", "Training curves") and the
# kind the subcategory ("Tables", "Figures"); the plot rules use the same names.
TABLE_CATEGORIES = {
    "table1": "Accuracy",
    "table2": "Accuracy",
    "table3": "Accuracy",
    "comparison": "Accuracy",
    "comparison_table3": "Accuracy",
    "paired_differences": "Seeds and methods",
    "methods": "Seeds and methods",
    "calibration": "Calibration",
    "provenance": "Provenance",
}


def table_outputs():
    """Rule aggregate's named outputs, e.g. table1_csv; the html and csv files go in the
    report (the csv files are the tables' data: every seed and the run file it came from).
    """
    outputs = {}
    for name in OUTPUT_FILES:
        stem, suffix = name.rsplit(".", 1)
        path = f"{TABLES}/{name}"
        if suffix in ("html", "csv"):
            table = "comparison" if stem == "comparison_table3" else stem
            label = TABLE_CAPTIONS[stem] + (" (csv)" if suffix == "csv" else "")
            path = report(
                path,
                caption=f"../report/{table}.rst",
                category=TABLE_CATEGORIES[stem],
                subcategory="Tables",
                labels={"table": label},
            )
        outputs[f"{stem}_{suffix}"] = path
    return outputs


# The report's front page, written by results.smk's front_page; workflow/report/workflow.rst
# pastes it into the page the report opens on, finding it by this file name.
FRONT_PAGE = f"{RESULTS}/front_page.html"


def plot_targets():
    """Every figure: the two summary plots; per experiment its training curves (when it
    trains gamma) and reliability diagrams; per LS++ experiment and alpha its C matrix.
    """
    stems = ["accuracy_vs_gamma", "gain_over_baseline"]
    for name, experiment in STUDY.experiments.items():
        if "gamma" in experiment.methods:
            stems.append(f"training_curves/{name}")
        stems.append(f"reliability/{name}")
        stems += [
            f"c_matrix/{name}/lspp~{value_text}"
            for value_text in sorted(
                {run.value_text for run in STUDY.runs("lspp") if run.experiment == name}
            )
        ]
    return [f"{PLOTS}/{stem}.{suffix}" for stem in stems for suffix in ("png", "pdf")]


def final_targets():
    """The targets of the default rule: every dataset prepared, every run trained, the
    tables, the plots and the report's front page. The report is made from these by `snakemake --report`.
    """
    prepared = [prepared_files(dataset)["manifest"] for dataset in STUDY.datasets]
    tables = [f"{TABLES}/{name}" for name in OUTPUT_FILES]
    return prepared + all_run_files("metrics") + tables + plot_targets() + [FRONT_PAGE]


# Every study's report, made at the end of every run that leaves the study complete
# (workflow/Snakefile's onsuccess): Snakemake's HTML report, one self-contained file.
REPORT = f"{RESULTS}/report.html"


def report_command():
    """`snakemake --report REPORT` for this very study: the same Snakefile, working
    directory, config files and --config values (as Snakemake passes them to its own
    jobs), so that the report shows the study that just ran."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(workflow.main_snakefile),
        "--directory",
        os.getcwd(),
        "--report",
        REPORT,
    ]
    configfiles = [str(path) for path in workflow.config_settings.configfiles]
    if configfiles:
        command += ["--configfile", *configfiles]
    overrides = list(workflow.config_settings.config_args or [])
    if overrides:
        command += ["--config", *overrides]
    return command


REPORT_VARIABLE = "SMOOTHBENCH_REPORT"


def make_the_report():
    """Write the study's report at REPORT once a run has succeeded (not in a dry run:
    Snakemake calls no onsuccess handler there), provided every output of the study
    exists (a run of a part of it, --until or a single target, leaves the report as it
    was). A report that fails warns and leaves the run successful. SMOOTHBENCH_REPORT=0
    in the environment skips it (the test suite does, but for the tests of the report).
    """
    if os.environ.get(REPORT_VARIABLE, "1") == "0":
        print(f"No report: {REPORT_VARIABLE}=0", file=sys.stderr)
        return
    missing = [path for path in final_targets() if not os.path.exists(path)]
    if missing:
        print(
            f"No report yet: {len(missing)} of the study's outputs are missing "
            f"(e.g. {missing[0]}); a run that completes the study writes {REPORT}.",
            file=sys.stderr,
        )
        return
    command = report_command()
    try:
        process = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:
        process = None
        failure = str(error)
    else:
        failure = (process.stdout + process.stderr).strip()[-3000:]
    if process is not None and process.returncode == 0:
        print(f"The study's report: {REPORT}", file=sys.stderr)
        return
    print(
        f"warning: the report could not be made:\n{failure}\n"
        f"To make it: {shlex.join(command[2:])}",
        file=sys.stderr,
    )
