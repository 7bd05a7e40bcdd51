"""The one exception class for bad input: what the tools print as one line (the file or option, then
the problem) with exit status 1, where any other exception is a bug and keeps its traceback."""


class InputError(ValueError):
    """Input that cannot be used; the message names the file or option first."""
