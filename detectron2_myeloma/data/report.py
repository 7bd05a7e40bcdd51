"""What a reader kept and skipped, and the error it raises for bad input.

Every reader takes ``strict``: when True a bad file raises :class:`DatasetError` naming the file and the
problem; when False it is recorded here as skipped (with the reason) and a warning is logged, so that a
user who asked to skip bad inputs still sees what was left out.
"""
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Optional, Tuple, TypeVar

from ..utils.errors import InputError

logger = logging.getLogger(__name__)
T = TypeVar("T")

MASK_OF_SKIPPED_IMAGE = "mask of a skipped image"


class DatasetError(InputError):
    """A dataset file that cannot be used; ``str(err)`` starts with the file's path."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass
class ConversionReport:
    """Counts of what a reader produced and the list of what it skipped, with reasons."""

    images: int = 0
    instances: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (where, reason)

    def problem(self, path: str, problem: str, strict: bool) -> None:
        """Raise for ``path`` when strict, otherwise record it as skipped and warn."""
        if strict:
            raise DatasetError(path, problem)
        logger.warning("skipping %s: %s", path, problem)
        self.skipped.append((str(path), problem))

    def attempt(self, strict: bool, fn: Callable[..., T], *args: Any) -> Optional[T]:
        """``fn(*args)``; a DatasetError it raises is handled by :meth:`problem` and gives None."""
        try:
            return fn(*args)
        except DatasetError as err:
            self.problem(err.path, err.problem, strict)
            return None

    def add_image(self, dicts: List[dict], record: dict) -> None:
        """Append a finished dataset dict and count it."""
        dicts.append(record)
        self.images += 1
        self.instances += len(record["annotations"])

    def skip(self, where: str, reason: str) -> None:
        """Record something left out on purpose (not an error), e.g. a mark too small to be a cell."""
        self.skipped.append((str(where), reason))

    def skip_masks(self, wheres: Iterable[str]) -> None:
        """Count the masks of an image that was left out, so that its instances are not lost silently."""
        for where in wheres:
            self.skip(where, MASK_OF_SKIPPED_IMAGE)

    def skipped_by_reason(self) -> Counter:
        return Counter(reason for _, reason in self.skipped)

    def summary(self) -> str:
        lines = [f"{self.images} images, {self.instances} instances, {len(self.skipped)} skipped"]
        lines += [f"  skipped {n} x {reason}" for reason, n in self.skipped_by_reason().most_common()]
        return "\n".join(lines)
