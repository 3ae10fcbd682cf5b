"""Learning-rate schedules nnU-Net does not have, stepped the way nnU-Net steps its own.

nnU-Net calls ``lr_scheduler.step(current_epoch)`` at the start of every epoch (0-based) and
does not save the scheduler in its checkpoints, so each schedule here is a closed form of the
epoch: a resumed run gets the same rate as an uninterrupted one.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler


class StepHalvingLRScheduler(_LRScheduler):
    """``initial_lr · factor^(n // every)`` for the epoch numbered n from 1, MPU-Net's release schedule.

    The release (``utils/common.py``) counts epochs from 1, so its 100th epoch (nnU-Net's epoch
    99) is the first at half the rate; the paper says "halved after every 100 iterations".
    """

    def __init__(self, optimizer: Optimizer, initial_lr: float, every: int = 100, factor: float = 0.5):
        self.initial_lr, self.every, self.factor = initial_lr, every, factor
        self.ctr = 0
        super().__init__(optimizer, -1)

    def learning_rate(self, epoch: int) -> float:
        """The rate of nnU-Net's (0-based) ``epoch``."""
        return self.initial_lr * self.factor ** ((epoch + 1) // self.every)

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step, self.ctr = self.ctr, self.ctr + 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(current_step)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return self._last_lr
