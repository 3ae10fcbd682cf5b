"""Losses the papers train with that nnU-Net does not have.

All take nnU-Net's conventions: logits ``(B, C, *spatial)`` and an integer label map
``(B, 1, *spatial)``; deep supervision reuses nnU-Net's ``DeepSupervisionWrapper``.
"""

from __future__ import annotations

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import nn
from torch.nn import functional as F


class TverskyBCELoss(nn.Module):
    """MPU-Net's loss as released (``utils/loss.py``): mean over classes of 1 − Tversky, plus BCE.

    On the softmax probabilities P and the one-hot target G, per sample and class (background
    included): TI = TP / (TP + α·FP + β·FN + smooth), α = 0.3 on false positives, β = 0.7 on
    missed voxels, smooth = 1 in the denominator only; the Tversky term is 1 − the mean TI.
    The release applies BCE to the sigmoid of its (softmax) outputs, without class weights;
    so do we, through ``binary_cross_entropy_with_logits(P, G)``, which is the same number and
    allowed under autocast. (The paper's text names a class-balanced CE; the code is followed.)
    """

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, smooth: float = 1.0):
        super().__init__()
        self.alpha, self.beta, self.smooth = alpha, beta, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        probabilities = torch.softmax(logits.float(), 1)
        one_hot = F.one_hot(target[:, 0].long(), n_classes).movedim(-1, 1).float()
        axes = tuple(range(2, logits.dim()))
        tp = (probabilities * one_hot).sum(axes)
        fp = (probabilities * (1 - one_hot)).sum(axes)
        fn = ((1 - probabilities) * one_hot).sum(axes)
        tversky = (tp / (tp + self.alpha * fp + self.beta * fn + self.smooth)).mean(1)
        tversky_loss = (1 - tversky).mean().clamp(0, 1)
        return tversky_loss + F.binary_cross_entropy_with_logits(probabilities, one_hot)


class ScheduledDeepSupervision(DeepSupervisionWrapper):
    """Full weight on the first output, ``first · decay^(epoch // every)`` on the others."""

    def __init__(self, loss: nn.Module, first: float, decay: float, every: int, n_outputs: int = 4):
        self.first, self.decay, self.every, self.n_outputs = first, decay, every, n_outputs
        super().__init__(loss, self.weights(0))

    def weights(self, epoch: int) -> tuple[float, ...]:
        auxiliary = self.first * self.decay ** (epoch // self.every)
        return (1.0,) + (auxiliary,) * (self.n_outputs - 1)

    def set_epoch(self, epoch: int) -> None:
        self.weight_factors = self.weights(epoch)


class FullResolutionDeepSupervision(ScheduledDeepSupervision):
    """MPU-Net's training as released: loss(fused) + α · Σ loss(head), all at full resolution.

    The network's deep-supervision list is [fused, coarser heads...] at their own resolutions
    (what nnU-Net's target list expects); each head is upsampled trilinearly (as the release's
    ``Map`` does before its softmax) and compared with the full-resolution target, ``targets[0]``.
    """

    def forward(self, outputs, targets) -> torch.Tensor:
        full = targets[0]
        size = full.shape[2:]
        mode = "trilinear" if len(size) == 3 else "bilinear"
        upsampled = [o if o.shape[2:] == size else F.interpolate(o, size=size, mode=mode, align_corners=False)
                     for o in outputs]
        return super().forward(upsampled, [full] * len(upsampled))


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
