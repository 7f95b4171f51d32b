"""Snakemake adapter: rule prepare -> smoothbench.prepare.prepare."""

from pathlib import Path

from smoothbench.prepare import prepare
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    prepare(snakemake.params.settings, Path(snakemake.output.manifest).parent)
