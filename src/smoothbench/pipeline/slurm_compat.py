"""A fix for the SLURM executor plugin: a job cancelled with ``scancel`` must count as failed.

``sacct`` reports a cancelled job's state as ``CANCELLED by <uid>``. The executor
plugin (``snakemake-executor-plugin-slurm``, 2.8.0 and earlier) compares states with
its list of failures word for word, so it takes ``CANCELLED by 0`` for a job still
running and waits forever: ``retries`` never resubmits the job, and the workflow never
ends. (The old cookiecutter SLURM profile had the same bug, Snakemake-Profiles/slurm#22.)

:func:`install` wraps the plugin's status query so that every state is its first word
(``CANCELLED by 0`` -> ``CANCELLED``); other states are one word already. The Snakefile
calls it; it does nothing when the plugin is not installed, and says so when the
plugin's layout has changed instead of failing the workflow.
"""

from __future__ import annotations

import functools

_MARK = "_smoothbench_first_word_states"


def first_word_states(states: dict | None) -> dict | None:
    """``{"10": "CANCELLED by 0"}`` -> ``{"10": "CANCELLED"}``."""
    if states is None:
        return None
    return {
        job: (state.split()[0] if state.strip() else state)
        for job, state in states.items()
    }


def install() -> str:
    """Patch the plugin (idempotent); return what was done, for logs and tests."""
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ImportError:
        return "the SLURM executor plugin is not installed: nothing to patch"
    query = getattr(plugin, "query_job_status", None)
    if query is None:
        return "the SLURM executor plugin has no query_job_status any more: not patched (check scancel handling)"
    if getattr(query, _MARK, False):
        return "already patched"

    @functools.wraps(query)
    async def query_job_status(command, logger):
        states, duration = await query(command, logger)
        return first_word_states(states), duration

    setattr(query_job_status, _MARK, True)
    plugin.query_job_status = query_job_status
    return "patched: SLURM states are read by their first word (CANCELLED by <uid> -> CANCELLED)"
