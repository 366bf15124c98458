"""One exception type for everything a user can cause. The CLI prints it as one line and exits 2."""


class OnewordError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback). Line breaks in the
    message (a library's text quoted in it, a name read from a file) become spaces, so it stays one line."""

    def __init__(self, message: str = "") -> None:
        super().__init__(" ".join(line.strip() for line in str(message).splitlines() if line.strip()))
