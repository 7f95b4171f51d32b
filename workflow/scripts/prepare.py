"""Snakemake adapter: rule prepare -> smoothbench.data.preparation.prepare."""

import json
from pathlib import Path

from smoothbench.data.preparation import prepare
from smoothbench.pipeline.jobs import logged

with logged(snakemake.log[0]):
    prepare(
        snakemake.params.settings,
        Path(snakemake.output.manifest).parent,
        json.loads(Path(snakemake.input.record).read_text()),
    )
