"""The fix that makes the SLURM executor plugin see a scancel'ed job as failed."""

from __future__ import annotations

import asyncio
import logging

import snakemake_executor_plugin_slurm as plugin

from smoothbench.pipeline import slurm_compat


def test_states_are_read_by_their_first_word():
    assert slurm_compat.first_word_states(
        {"10": "CANCELLED by 0", "11": "COMPLETED", "12": "RUNNING"}
    ) == {
        "10": "CANCELLED",
        "11": "COMPLETED",
        "12": "RUNNING",
    }
    assert slurm_compat.first_word_states(None) is None


def test_the_patched_plugin_query_reports_a_cancelled_job_as_cancelled():
    slurm_compat.install()
    assert slurm_compat.install() == "already patched"
    # the plugin's own parser, fed what sacct prints for a cancelled and a finished job
    states, _ = asyncio.run(
        plugin.query_job_status(
            "printf '10|CANCELLED by 0\\n11|COMPLETED\\n'", logging.getLogger()
        )
    )
    assert states == {"10": "CANCELLED", "11": "COMPLETED"}
    # and CANCELLED is one of the states the plugin treats as a failure (so retries apply)
    source = open(plugin.__file__).read()
    assert '"CANCELLED",' in source.split("fail_stati = (", 1)[1].split(")", 1)[0]
