"""Training hooks the project adds to Detectron2's."""
from typing import Sequence

from detectron2.engine import hooks
from detectron2.utils.events import EventWriter


class PeriodicWriterFromStart(hooks.PeriodicWriter):
    """Detectron2's ``PeriodicWriter`` that also writes after iterations 1, 2, 5 and 10: a CPU run at
    about 2 s per iteration would otherwise print nothing (no loss, no ETA) for its first 20."""

    EARLY_ITERS = (1, 2, 5, 10)

    def __init__(self, writers: Sequence[EventWriter], period: int = 20):
        super().__init__(writers, period)
        self.writers, self.period = list(writers), period  # its own: the parent's are private

    def after_step(self) -> None:
        super().after_step()
        done = self.trainer.iter + 1
        written = done % self.period == 0 or done == self.trainer.max_iter
        if done in self.EARLY_ITERS and not written:
            for writer in self.writers:
                writer.write()
