"""The one exception class for bad input: what the tools print as one line (the file or option, then
the problem) with exit status 1, where any other exception is a bug and keeps its traceback."""
from typing import Optional


class InputError(ValueError):
    """Input that cannot be used; the message names the file or option first."""


def one_line(err: BaseException, limit: Optional[int] = 160) -> str:
    """``err``'s message as one line of a tool's error: whitespace collapsed, the quotes a KeyError puts
    around its message dropped, the exception's type where it has no message, cut at ``limit``
    characters (None: whole)."""
    text = " ".join(str(err).strip("'\"").split()) or type(err).__name__
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."
