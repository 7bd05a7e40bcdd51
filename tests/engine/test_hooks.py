"""The periodic writer prints the first iterations too, then every period, and the last one once."""
from types import SimpleNamespace

from detectron2.utils.events import EventWriter

from detectron2_myeloma.engine.trainer import PeriodicWriterFromStart


class CountingWriter(EventWriter):
    def __init__(self, trainer):
        self.trainer, self.at = trainer, []

    def write(self):
        self.at.append(self.trainer.iter + 1)


def written_at(max_iter: int, period: int = 20) -> list:
    """The iterations after which a writer wrote, over a run of ``max_iter``."""
    trainer = SimpleNamespace(iter=0, max_iter=max_iter)
    writer = CountingWriter(trainer)
    hook = PeriodicWriterFromStart([writer], period=period)
    hook.trainer = trainer
    for trainer.iter in range(max_iter):
        hook.after_step()
    return writer.at


def test_writes_early_then_periodically():
    assert written_at(45) == [1, 2, 5, 10, 20, 40, 45]


def test_a_short_run_writes_each_iteration_once():
    assert written_at(5) == [1, 2, 5]
    assert written_at(10, period=5) == [1, 2, 5, 10]
