import sys
from pathlib import Path

# The package lives in src/; make it importable here even when it is not pip-installed
# (the script jobs import it through the link workflow/scripts/smoothbench).
SOURCE_FOLDER = str(Path(workflow.basedir) / "src")
if SOURCE_FOLDER not in sys.path:
    sys.path.insert(0, SOURCE_FOLDER)

from smoothbench.config import ConfigError, load_study
from smoothbench.registry import DATASETS
from smoothbench.storage import ARRAY_NAMES, MANIFEST_NAME


def validated_study(config):
    """The config checked against workflow/schemas/config.schema.yaml (defaults filled)
    and resolved into experiments; a bad config stops here, before any job is planned.
    """
    schema = Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    try:
        return load_study(config, schema)
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


RESULTS = "results"
RUNS = f"{RESULTS}/runs"
LOGS = f"{RESULTS}/logs"
ENVIRONMENT = "../../envs/smoothbench.yaml"


def prepared_files(dataset):
    """The files of one prepared dataset (see smoothbench.storage)."""
    folder = f"{RESULTS}/prepared/{dataset}"
    return {name: f"{folder}/{name}.npy" for name in ARRAY_NAMES} | {
        "manifest": f"{folder}/{MANIFEST_NAME}"
    }


def experiment_dataset(experiment):
    """The registry name of the dataset an experiment trains on."""
    return STUDY.experiments[experiment].dataset.name


def train_settings(wildcards):
    """The settings one training run depends on (a change retrains it)."""
    try:
        return STUDY.train_settings(
            wildcards.experiment, wildcards.gamma, int(wildcards.seed)
        )
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


def run_files(run):
    """history.csv and metrics.json of one smoothbench.config.Run."""
    folder = f"{RUNS}/{run.experiment}/gamma~{run.gamma_text}/seed~{run.seed}"
    return {"history": f"{folder}/history.csv", "metrics": f"{folder}/metrics.json"}


def final_targets():
    """The targets of the default rule: every dataset prepared, every run trained.

    Later stages (tables, plots) extend this list.
    """
    prepared = [prepared_files(dataset)["manifest"] for dataset in STUDY.datasets]
    return prepared + [run_files(run)["metrics"] for run in STUDY.runs()]
