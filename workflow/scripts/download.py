"""Snakemake adapter: rule download -> smoothbench.download.download."""

from smoothbench.download import download
from smoothbench.storage import write_json_atomic
from smoothbench.study import load_study
from smoothbench.workflow_support import logged

with logged(snakemake.log[0]):
    network = load_study(snakemake.config).network_settings()
    record = download(snakemake.params.settings, network)
    write_json_atomic(snakemake.output.record, record)
