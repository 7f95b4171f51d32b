"""Snakemake adapter: rule prepare -> smoothbench.prepare.prepare."""

import json
from pathlib import Path

from smoothbench.prepare import prepare
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    prepare(
        snakemake.params.settings,
        Path(snakemake.output.manifest).parent,
        json.loads(Path(snakemake.input.record).read_text()),
    )
