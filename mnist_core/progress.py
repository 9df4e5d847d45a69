"""What a training reports as it goes: plain data shared by the training loop (`ml.train`),
the job that runs it (`jobs`), the job service and the pages, none of which need TensorFlow
to read it."""

from __future__ import annotations

from dataclasses import dataclass

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")  # per finished epoch


@dataclass(frozen=True)
class ProgressEvent:
    """A snapshot of training, sent several times per epoch and at each epoch's end."""

    epoch: int  # 1-based epoch being trained (or just finished, when `epoch_end`)
    epochs: int  # planned number of epochs (early stopping may end sooner)
    batch: int  # batches done in this epoch
    batches: int  # batches per epoch
    metrics: dict[str, float]  # latest loss/accuracy (and val_* at an epoch's end)
    elapsed: float  # seconds since training started
    eta: float  # estimated seconds left if all planned epochs run
    epoch_end: bool = False

    @property
    def fraction(self) -> float:
        """Share of the planned work done, in [0, 1]."""
        done = (self.epoch - 1) * self.batches + self.batch
        return min(1.0, done / max(1, self.epochs * self.batches))
