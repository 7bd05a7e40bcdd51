"""One atomic writer for every file the project produces (converted json, extracted slide images,
comparison records, results markdown): an interrupted or failed write leaves the old file, never half
of a new one."""
import json
import os
import shutil
import tempfile
from typing import Any, Optional, Union

import numpy as np

from .errors import InputError

# Written into every result folder; --overwrite replaces only folders that hold it.
OUTPUT_MARKER = ".detectron2_myeloma"


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


def check_output_file(path: str) -> None:
    """InputError for an output file that could not be written, found before the work whose result it
    is: a folder, or a path that :func:`check_can_create` refuses."""
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder; give the name of the file to write")
    check_can_create(path)


def check_can_create(path: str) -> None:
    """InputError when ``path`` (a file or folder to write; missing folders above it are made when
    writing) could not be created: a file above it, or a folder that refuses new entries. The nearest
    existing folder is tried by making and removing a temporary folder in it, since permission bits do
    not tell (root ignores them; read-only or immutable file systems, ACLs)."""
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f"{path}: cannot be written, {existing} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=existing))
    except OSError as err:
        reason = (err.strerror or type(err).__name__).lower()
        raise InputError(f"{path}: cannot write in {existing}: {reason}") from None


class OutputFolder:
    """A tool's result folder, written whole or not at all: results go into a hidden sibling
    ``.<name>.partial`` that replaces ``path`` when the ``with`` block ends without an exception (on
    an exception it is removed and ``path`` is left as it was), so no result of an earlier run is left
    beside new ones.

    Checked when made, before any work: a folder that could not be created (:func:`check_can_create`)
    is refused, and so is an existing non-empty ``path`` unless ``overwrite``, and even then unless it
    holds :data:`OUTPUT_MARKER` (a folder this project wrote), so that a mistyped
    ``--output ~ --overwrite`` cannot delete a user's files."""

    def __init__(self, path: str, overwrite: bool = False, tool: str = ""):
        self.path = os.path.abspath(path)
        self.tool = tool
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise InputError(f"{path}: exists and is not a folder")
        if os.path.isdir(self.path) and os.listdir(self.path):
            if not overwrite:
                raise InputError(f"{path}: output folder is not empty (an earlier run's results?): choose a "
                                 "new folder or pass --overwrite to replace it")
            if not os.path.isfile(os.path.join(self.path, OUTPUT_MARKER)):
                raise InputError(f"{path}: not a folder this project wrote (no {OUTPUT_MARKER} in it): "
                                 "refusing to replace it; choose a new folder")
        check_can_create(self.path)
        parent, name = os.path.split(self.path)
        self.partial = os.path.join(parent, f".{name}.partial")

    def __enter__(self) -> str:
        shutil.rmtree(self.partial, ignore_errors=True)  # left by a run that was killed
        os.makedirs(self.partial)
        with open(os.path.join(self.partial, OUTPUT_MARKER), "w") as f:
            f.write(f"{self.tool}\n")
        return self.partial

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            return
        old = None
        if os.path.exists(self.path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(self.path)}.old-", dir=os.path.dirname(self.path))
            os.replace(self.path, os.path.join(old, "results"))
        os.replace(self.partial, self.path)
        if old is not None:
            shutil.rmtree(old)
