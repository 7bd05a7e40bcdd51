"""One atomic writer for every file the project produces (converted json, extracted slide images,
comparison records, results markdown): an interrupted or failed write leaves the old file, never half
of a new one."""
import json
import os
import tempfile
from typing import Any, Optional, Union

import numpy as np


def write_atomic(path: str, data: Union[str, bytes]) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place; the folder is
    created when missing."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json_atomic(obj: Any, path: str, indent: Optional[int] = None) -> None:
    """Write json to a temporary file beside ``path`` and rename it into place."""
    write_atomic(path, json.dumps(obj, default=_json_default, indent=indent))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to json")
