"""The periodic writer prints the first iterations too, then every period, and the last one once."""
from types import SimpleNamespace

from detectron2.utils.events import EventWriter

from detectron2_myeloma.engine.hooks import PeriodicWriterFromStart


class CountingWriter(EventWriter):
    def __init__(self, trainer):
        self.trainer, self.at = trainer, []

    def write(self):
        self.at.append(self.trainer.iter + 1)


def test_writes_early_then_periodically():
    trainer = SimpleNamespace(iter=0, max_iter=45)
    writer = CountingWriter(trainer)
    hook = PeriodicWriterFromStart([writer], period=20)
    hook.trainer = trainer
    for trainer.iter in range(trainer.max_iter):
        hook.after_step()
    assert writer.at == [1, 2, 5, 10, 20, 40, 45]


def test_a_short_run_writes_each_iteration_once():
    trainer = SimpleNamespace(iter=0, max_iter=5)
    writer = CountingWriter(trainer)
    hook = PeriodicWriterFromStart([writer], period=20)
    hook.trainer = trainer
    for trainer.iter in range(trainer.max_iter):
        hook.after_step()
    assert writer.at == [1, 2, 5]
