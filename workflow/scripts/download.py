"""Snakemake adapter: rule download -> smoothbench.download.download."""

from smoothbench.download import download
from smoothbench.storage import write_json_atomic
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    write_json_atomic(snakemake.output.record, download(snakemake.params.settings))
