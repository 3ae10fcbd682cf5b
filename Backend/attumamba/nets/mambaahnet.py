"""Mamba-AHNet (2D, applied slice by slice to volumes), built from its paper (no public code).

- Encoder (HUNet-style): per level a residual block of two 3×3 conv-BN-ReLU with a 1×1
  shortcut, then 2× max-pooling; widths 32–512.
- Decoder level = attention-enhanced upsampling block (the paper's Algorithm 1): transposed
  conv, BN, ReLU -> x_up; the attention gate A(x_up, t, f/2) of Algorithm 3, which returns
  x_up ⊙ rate with the skip t as the gating signal; concatenation with the skip, 3×3 conv,
  ReLU, BN, ReLU. Then an upsampling residual block (Algorithm 2's residual part) and a VM
  layer, whose equations (LN, Mamba + s·x, LN, projection) are LightM-UNet's RVM layer, reused.
- One segmentation head per decoder level (deep supervision, highest resolution first).
- Optional image-reconstruction branch: a 3×3 conv from the last decoder features back to
  the input channels, trained jointly (``forward_with_reconstruction``).
Every choice the paper leaves open (deep supervision, encoder depth and widths, block order,
the reconstruction loss and its weight, Mamba for its VSS block) is listed in docs/networks.md.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .blocks import AttentionGate, BasicResBlock, conv_dims
from .lightmunet import RVMLayer

FEATURES = (32, 64, 128, 256, 512)


def residual_block(in_channels: int, channels: int) -> BasicResBlock:
    return BasicResBlock(nn.Conv2d, in_channels, channels, nn.BatchNorm2d, {}, nonlin=nn.ReLU, nonlin_kwargs={"inplace": True})


class AttentionUpBlock(nn.Module):
    """Algorithm 1 + residual block + VM (Mamba) layer."""

    def __init__(self, below: int, channels: int):
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose2d(below, channels, 2, stride=2), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.gate = AttentionGate(channels, nn.Conv2d, nn.BatchNorm2d, inter_channels=max(channels // 2, 1))
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.residual = residual_block(channels, channels)
        self.mamba = RVMLayer(channels, channels)

    def forward(self, x, skip):
        up = self.up(x)
        gated_up = self.gate(skip, up)  # Algorithm 1 step 4 / Algorithm 3: A(x_up, t) = x_up ⊙ rate
        fused = self.fuse(torch.cat((gated_up, skip), dim=1))
        return self.mamba(self.residual(fused))


class AHDecoder(nn.Module):
    def __init__(self, features, num_classes: int, deep_supervision: bool):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.blocks = nn.ModuleList(AttentionUpBlock(features[i + 1], features[i]) for i in reversed(range(len(features) - 1)))
        self.seg_layers = nn.ModuleList(nn.Conv2d(features[i], num_classes, 1) for i in reversed(range(len(features) - 1)))

    def forward(self, skips: list[torch.Tensor]) -> tuple[list[torch.Tensor] | torch.Tensor, torch.Tensor]:
        x = skips[-1]
        outputs = []
        for block, head, skip in zip(self.blocks, self.seg_layers, reversed(skips[:-1])):
            x = block(x, skip)
            if self.deep_supervision or head is self.seg_layers[-1]:
                outputs.append(head(x))
        outputs = outputs[::-1]
        return (outputs if self.deep_supervision else outputs[0]), x


class MambaAHNet(nn.Module):
    """Mamba-AHNet; 5-D input (B, C, Z, Y, X) is segmented slice by slice along Z."""

    deep_supervision_scales = ((1.0, 1.0), (0.5, 0.5), (0.25, 0.25), (0.125, 0.125))

    def __init__(self, input_channels: int, num_classes: int, conv_op=nn.Conv2d, features=FEATURES,
                 deep_supervision: bool = False, reconstruction: bool = False, **plan_topology):
        super().__init__()
        if conv_dims(conv_op) != 2:
            raise InputError("Mamba-AHNet is a 2D network (applied slice by slice); use a 2d configuration")
        features = list(features)
        self.encoder = nn.ModuleList(residual_block(c_in, c) for c_in, c in zip([input_channels] + features[:-1], features))
        self.pool = nn.MaxPool2d(2)
        self.decoder = AHDecoder(features, num_classes, deep_supervision)
        self.reconstruction_head = nn.Conv2d(features[0], input_channels, 3, padding=1) if reconstruction else None

    def _forward_2d(self, x):
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        return self.decoder(skips)

    def forward(self, x: torch.Tensor):
        return self.forward_with_reconstruction(x)[0]

    def forward_with_reconstruction(self, x: torch.Tensor):
        """(segmentation output(s), reconstructed input or None): what a joint trainer needs."""
        if x.dim() == 5:  # volume: fold slices into the batch, unfold the outputs
            batch, channels, depth = x.shape[:3]
            slices = x.permute(0, 2, 1, 3, 4).reshape(batch * depth, channels, *x.shape[3:])
            seg, recon = self.forward_with_reconstruction(slices)
            unfold = lambda t: t.reshape(batch, depth, *t.shape[1:]).permute(0, 2, 1, 3, 4)
            seg = [unfold(s) for s in seg] if isinstance(seg, list) else unfold(seg)
            return seg, None if recon is None else unfold(recon)
        seg, features = self._forward_2d(x)
        recon = self.reconstruction_head(features) if self.reconstruction_head is not None else None
        return seg, recon
