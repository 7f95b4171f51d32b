"""The errors smoothbench raises on purpose: bad input named clearly, never a bug."""


class SmoothbenchError(Exception):
    """An error whose message is meant for the user (no traceback needed)."""
