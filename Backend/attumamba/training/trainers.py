"""nnU-Net v2 trainers with each paper's recipe; nnU-Net finds them through ``nnUNet_extTrainer``.

The network comes from the plans (``attumamba.nets.plans_with_network``); a trainer only says
how it is trained: budget, optimiser, loss, precision. Everything else is nnU-Net's own
trainer, unmodified. All of ours add what a desktop tool needs: a checkpoint after every
epoch (so a cancelled run resumes losing at most one epoch), a progress callback and a
cancel check between iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from ..errors import CancelledError
from .losses import FullResolutionDeepSupervision, ReconstructionLoss, TverskyBCELoss
from .sampling import nnunet_builds_loaders_with, training_loader
from .schedules import StepHalvingLRScheduler

#: (epoch done, epochs in total, {"train_loss", "val_loss", "pseudo_dice"})
EpochCallback = Callable[[int, int, dict], None]


class MambaTrainerBase(nnUNetTrainer):
    """nnU-Net's trainer plus per-epoch checkpoints, progress, cancellation and an AMP switch."""

    epochs, iterations, val_iterations = 1000, 250, 50
    learning_rate = 1e-2
    deep_supervision = True
    amp = True  # False: forward and backward entirely in fp32 (U-Mamba's NoAMP recipe)
    foreground_oversampling = 0.33  # share of each batch centred on a lesion (nnU-Net's default)
    lesion_anywhere = False  # True: foreground patches hold their lesion anywhere, not at the centre
    hard_negative_fraction = 0.0  # share of patches centred on a hot spot outside the lesions (training.sampling)
    batch_dice: bool | None = None  # None: the plans' choice; True: one Dice over the whole batch

    # nnU-Net records __init__'s arguments by name to rebuild the trainer: subclasses keep this signature

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch = self.epochs, self.iterations
        self.num_val_iterations_per_epoch = self.val_iterations
        self.initial_lr, self.enable_deep_supervision = self.learning_rate, self.deep_supervision
        self.oversample_foreground_percent = self.foreground_oversampling
        if self.batch_dice is not None:  # nnU-Net's loss reads the configuration; the run's plans.json records it
            self.configuration_manager.configuration["batch_dice"] = self.batch_dice
            self.plans_manager.plans["configurations"][configuration]["batch_dice"] = self.batch_dice
        if self.hard_negative_fraction:  # recorded in the run's plans.json beside batch_dice
            self.plans_manager.plans["configurations"][configuration]["hard_negative_fraction"] = self.hard_negative_fraction
        self.save_every = 1
        self.on_epoch: EpochCallback | None = None
        self.should_cancel: Callable[[], bool] = lambda: False

    def _do_i_compile(self) -> bool:
        return False  # the scan is a custom kernel (ours or mamba-ssm's): nothing for torch.compile to gain

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        """Resume from a checkpoint read weights-only: nnU-Net's own reader unpickles anything in the file
        (and takes no dict), so it is handed what :func:`read_checkpoint` read instead."""
        if not isinstance(filename_or_checkpoint, (str, Path)):
            return super().load_checkpoint(filename_or_checkpoint)
        from unittest import mock

        from ..nets.checkpoint_file import read_checkpoint

        checkpoint = read_checkpoint(filename_or_checkpoint)
        with mock.patch.object(torch, "load", lambda *args, **kwargs: checkpoint):
            return super().load_checkpoint(str(filename_or_checkpoint))

    def initialize(self) -> None:
        super().initialize()
        if not self.amp:
            self.grad_scaler = None
            _forward_without_autocast(self.network, self.device.type)

    def get_dataloaders(self):
        loader = training_loader(self.lesion_anywhere, self.hard_negative_fraction)
        if loader is None:
            return super().get_dataloaders()
        with nnunet_builds_loaders_with(nnUNetTrainer.__module__, loader):
            return super().get_dataloaders()

    def train_step(self, batch: dict) -> dict:
        if self.should_cancel():
            raise CancelledError("training cancelled; run the same command again to resume from the last epoch")
        return super().train_step(batch)

    def on_epoch_end(self) -> None:
        epoch = self.current_epoch
        super().on_epoch_end()  # saves checkpoint_latest (save_every = 1) and advances current_epoch
        if self.on_epoch is not None:
            last = lambda key: self.logger.get_value(key, step=-1)  # noqa: E731
            self.on_epoch(epoch + 1, self.num_epochs, {
                "train_loss": float(last("train_losses")), "val_loss": float(last("val_losses")),
                "pseudo_dice": float(np.nanmean(last("dice_per_class_or_region"))),
            })

    def run_training(self) -> None:
        try:
            super().run_training()
        except BaseException:
            for loader in (getattr(self, "dataloader_train", None), getattr(self, "dataloader_val", None)):
                if hasattr(loader, "_finish"):
                    loader._finish()  # stop the augmentation worker processes
            raise


def _forward_without_autocast(network: nn.Module, device_type: str) -> None:
    """Make ``network`` ignore an enclosing autocast, without changing its state dict."""
    forward = network.forward

    def fp32_forward(*args, **kwargs):
        with torch.autocast(device_type=device_type, enabled=False):
            return forward(*args, **kwargs)

    network.forward = fp32_forward


def _adam(trainer: nnUNetTrainer, weight_decay: float, eps: float):
    optimizer = torch.optim.Adam(trainer.network.parameters(), lr=trainer.initial_lr, weight_decay=weight_decay, eps=eps)
    return optimizer, PolyLRScheduler(optimizer, trainer.initial_lr, trainer.num_epochs)


class nnUNetTrainerAttUMamba(MambaTrainerBase):  # noqa: N801 (nnU-Net's naming)
    """Att-UMamba: nnU-Net defaults (SGD 1e-2, Dice+CE, deep supervision, AMP) for 200 epochs × 50 iterations."""

    epochs, iterations, val_iterations = 200, 50, 25


class nnUNetTrainerAttUMambaCPU(nnUNetTrainerAttUMamba):  # noqa: N801
    """Att-UMamba on a CPU budget (a few thousand iterations, the shipped default model).

    - Adam 1e-3 with poly decay, half of each batch holding a lesion: under nnU-Net's SGD 1e-2 a
      small network on small lesions settles on "all background" for the whole budget.
    - The lesion anywhere in its patch (``training.sampling``): centred lesions taught our first
      model that "hot and central" means lesion (Dice 0.60 centred, 0.005 eight voxels off).
    - One Dice over the batch: nnU-Net's per-sample Dice scores an empty patch predicted empty as
      a perfect 1, so with lesions off-centre (some leave the patch) the cheapest loss was to
      predict nothing anywhere; our first lesion-anywhere run collapsed to that by epoch 10.
    - A quarter of the patches centred on physiological uptake (hard negatives): the shipped
      model's false positives were the PSMA salivary glands and other hot organs, which the
      random half of each batch seldom showed it.
    """

    epochs, learning_rate, foreground_oversampling = 40, 1e-3, 0.5
    lesion_anywhere, batch_dice, hard_negative_fraction = True, True, 0.25

    def configure_optimizers(self):
        return _adam(self, weight_decay=3e-5, eps=1e-8)


class nnUNetTrainerUMamba(MambaTrainerBase):  # noqa: N801
    """U-Mamba Bot/Enc: nnU-Net defaults, 1000 epochs × 250 iterations."""


class nnUNetTrainerUMambaNoAMP(nnUNetTrainerUMamba):  # noqa: N801
    """U-Mamba Enc without mixed precision (its authors' answer to NaN under AMP)."""

    amp = False


class nnUNetTrainerLightMUNet(MambaTrainerBase):  # noqa: N801
    """LightM-UNet: Adam 1e-4 (wd 1e-5, eps 1e-5), poly LR, 100 epochs, no deep supervision, fp32."""

    epochs, learning_rate, deep_supervision, amp = 100, 1e-4, False, False

    def configure_optimizers(self):
        return _adam(self, weight_decay=1e-5, eps=1e-5)


class nnUNetTrainerMPUNet(MambaTrainerBase):  # noqa: N801
    """MPU-Net as released: Adam 1e-4 halved every 100 epochs, 600 epochs, fp32 (no AMP);
    loss(fused) + α·Σ loss(head) with every head at full resolution, each loss Tversky (α 0.3,
    β 0.7) + BCE, the heads' weight α = 0.4 at first and ×0.8 every 30 epochs."""

    epochs, learning_rate, amp = 600, 1e-4, False

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr)
        return optimizer, StepHalvingLRScheduler(optimizer, self.initial_lr, every=100)

    def _build_loss(self):
        if not self.enable_deep_supervision:
            return TverskyBCELoss()
        return FullResolutionDeepSupervision(TverskyBCELoss(), first=0.4, decay=0.8, every=30)

    def on_train_epoch_start(self) -> None:
        if isinstance(self.loss, FullResolutionDeepSupervision):
            self.loss.set_epoch(self.current_epoch)
        super().on_train_epoch_start()


class nnUNetTrainerMambaAHNet(MambaTrainerBase):  # noqa: N801
    """Mamba-AHNet (2D): nnU-Net's Dice+CE with deep supervision plus λ·MSE between the
    reconstruction branch's output and the network input (λ = 0.1; the paper gives no value)."""

    reconstruction_weight = 0.1

    def _build_loss(self):
        return ReconstructionLoss(super()._build_loss(), self.network, self.reconstruction_weight)


def nnunet_trainers() -> dict[str, type[nnUNetTrainer]]:
    """Every trainer recipe defined in this module, by class name (the name nnU-Net looks trainers up by)."""
    return {name: value for name, value in globals().items()
            if name.startswith("nnUNetTrainer") and isinstance(value, type) and issubclass(value, nnUNetTrainer)
            and value.__module__ == __name__}
