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
LOGS = f"{RESULTS}/logs"
ENVIRONMENT = "../../envs/smoothbench.yaml"


def prepared_files(dataset):
    """The files of one prepared dataset (see smoothbench.storage)."""
    folder = f"{RESULTS}/prepared/{dataset}"
    return {name: f"{folder}/{name}.npy" for name in ARRAY_NAMES} | {
        "manifest": f"{folder}/{MANIFEST_NAME}"
    }


def final_targets():
    """The targets of the default rule - every dataset of the study, prepared.

    Later stages (training, tables) extend this list.
    """
    return [prepared_files(dataset)["manifest"] for dataset in STUDY.datasets]
