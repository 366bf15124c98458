"""One exception type for everything a user can cause. The CLI prints it as one line and exits 2."""


class OnewordError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback)."""
