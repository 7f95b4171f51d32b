"""Snakemake adapter: rule download -> smoothbench.data.download.download."""

from smoothbench.data.download import download
from smoothbench.files import write_json_atomic
from smoothbench.pipeline.jobs import logged
from smoothbench.study import load_study

with logged(snakemake.log[0]):
    network = load_study(snakemake.config).network_settings()
    record = download(snakemake.params.settings, network)
    write_json_atomic(snakemake.output.record, record)
