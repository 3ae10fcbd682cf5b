"""Losses the papers train with that nnU-Net does not have.

All take nnU-Net's conventions: logits ``(B, C, *spatial)`` and an integer label map
``(B, 1, *spatial)``; deep supervision reuses nnU-Net's ``DeepSupervisionWrapper``.
"""

from __future__ import annotations

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import nn
from torch.nn import functional as F


class TverskyBalancedCELoss(nn.Module):
    """MPU-Net's loss: Tversky on the softmax (foreground classes) + class-balanced cross-entropy.

    Tversky index TI = TP / (TP + α·FP + β·FN), summed over the batch; β > α punishes missed
    lesion voxels more than false ones. The CE weights each class by N / (K·n_k) over the
    batch (absent classes get weight 0), so a few lesion voxels count as much as the background.
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1e-5):
        super().__init__()
        self.alpha, self.beta, self.smooth = alpha, beta, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = target[:, 0].long()
        n_classes = logits.shape[1]
        counts = torch.bincount(labels.flatten(), minlength=n_classes).float()
        present = counts > 0
        weights = torch.where(present, counts.sum() / (present.sum() * counts.clamp_min(1)), torch.zeros_like(counts))
        ce = F.cross_entropy(logits.float(), labels, weight=weights)
        probabilities = torch.softmax(logits.float(), 1)[:, 1:]
        one_hot = F.one_hot(labels, n_classes).movedim(-1, 1)[:, 1:].float()
        axes = [0] + list(range(2, logits.dim()))
        tp = (probabilities * one_hot).sum(axes)
        fp = (probabilities * (1 - one_hot)).sum(axes)
        fn = ((1 - probabilities) * one_hot).sum(axes)
        tversky = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return (1 - tversky).mean() + ce


class ScheduledDeepSupervision(DeepSupervisionWrapper):
    """Full weight on the highest-resolution output, ``first · decay^(epoch // every)`` on the others."""

    def __init__(self, loss: nn.Module, first: float, decay: float, every: int, n_outputs: int = 4):
        self.first, self.decay, self.every, self.n_outputs = first, decay, every, n_outputs
        super().__init__(loss, self.weights(0))

    def weights(self, epoch: int) -> tuple[float, ...]:
        auxiliary = self.first * self.decay ** (epoch // self.every)
        return (1.0,) + (auxiliary,) * (self.n_outputs - 1)

    def set_epoch(self, epoch: int) -> None:
        self.weight_factors = self.weights(epoch)


class ReconstructionLoss(nn.Module):
    """Segmentation loss + ``weight`` · MSE(reconstruction, network input).

    The network's ordinary forward already runs its reconstruction head; hooks keep the head's
    output and the network's input of the last forward, so nnU-Net's training step stays as is.
    """

    def __init__(self, segmentation_loss: nn.Module, network: nn.Module, weight: float):
        super().__init__()
        if getattr(network, "reconstruction_head", None) is None:
            raise ValueError("the network has no reconstruction branch (build it with reconstruction=True)")
        self.segmentation_loss, self.weight = segmentation_loss, weight
        self._last: dict[str, torch.Tensor] = {}
        network.register_forward_pre_hook(lambda module, args: self._last.__setitem__("input", args[0]))
        network.reconstruction_head.register_forward_hook(
            lambda module, args, output: self._last.__setitem__("reconstruction", output))

    def forward(self, output, target) -> torch.Tensor:
        loss = self.segmentation_loss(output, target)
        reconstruction, source = self._last.pop("reconstruction", None), self._last.pop("input", None)
        if reconstruction is None or source is None:
            return loss
        if reconstruction.shape != source.shape:  # a volume folded into slices: fold the input the same way
            source = source.movedim(2, 1).reshape(reconstruction.shape)
        return loss + self.weight * F.mse_loss(reconstruction.float(), source.float())
