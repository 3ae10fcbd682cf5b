"""MPU-Net (3D): residual CNN encoder, position attention at the bottleneck, gated skips,
and four outputs at 1/8, 1/4, 1/2 and full resolution fused into the final prediction.

Follows the released MP-UNet model (V-Net-style residual stages of 3×3×3 convs with PReLU,
channels 16–256, dropout 0.2 below the first stage, strided-conv downsampling that stops at
1/8, transposed-conv upsampling, classic attention gates whose coarser gating signal is
resampled to the skip, DANet's position-attention cell with a learned weight starting at 0).
The fused prediction is the mean of the four upsampled softmax maps (the paper's weighted
average); it is returned as its logarithm so that nnU-Net's softmax gives the mean back.
Deviations for our inputs: the first stage's residual uses a 1×1×1 projection (the release
broadcasts a one-channel input), and ELU uses alpha = 1 (the release passes the channel count).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from .blocks import AttentionGate, conv_dims

FEATURES = (16, 32, 64, 128, 256)


class ResidualConvStage(nn.Module):
    """n × (3×3×3 conv + PReLU), added to the (projected) input."""

    def __init__(self, in_channels: int, channels: int, n_convs: int, dropout: float = 0.0):
        super().__init__()
        layers = []
        for i in range(n_convs):
            layers += [nn.Conv3d(in_channels if i == 0 else channels, channels, 3, padding=1), nn.PReLU(channels)]
        self.convs = nn.Sequential(*layers)
        self.shortcut = nn.Conv3d(in_channels, channels, 1) if in_channels != channels else nn.Identity()
        self.dropout = nn.Dropout3d(dropout) if dropout else nn.Identity()

    def forward(self, x):
        return self.dropout(self.convs(x) + self.shortcut(x))


def down_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Max-pool (3, stride 1) then a strided conv (k2 s2) or a same-size conv (k3 s1), BN, ELU."""
    conv = nn.Conv3d(in_channels, out_channels, 2, stride=2) if stride == 2 else nn.Conv3d(in_channels, out_channels, 3, padding=1)
    return nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), conv, nn.BatchNorm3d(out_channels), nn.ELU())


class PositionAttention(nn.Module):
    """DANet position attention over all voxels: x + γ · V softmax(QᵀK)ᵀ, γ learned from 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv3d(channels, channels // 8, 1)
        self.key = nn.Conv3d(channels, channels // 8, 1)
        self.value = nn.Conv3d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        batch, channels, *spatial = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)          # (B, N, C/8)
        k = self.key(x).flatten(2)                            # (B, C/8, N)
        attention = torch.softmax(torch.bmm(q, k), dim=-1)    # (B, N, N): row i attends over j
        v = self.value(x).flatten(2)                          # (B, C, N)
        out = torch.bmm(v, attention.transpose(1, 2)).reshape(batch, channels, *spatial)
        return self.gamma * out + x


class PAMBottleneck(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv_in = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1), nn.BatchNorm3d(channels), nn.PReLU(channels))
        self.pam = PositionAttention(channels)
        self.conv_out = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1), nn.BatchNorm3d(channels), nn.PReLU(channels))

    def forward(self, x):
        return self.conv_out(self.pam(self.conv_in(x)))


class DecoderLevel(nn.Module):
    """Upsample the coarser tensor, gate the skip with it, concatenate, 3 residual convs, one head."""

    def __init__(self, below: int, skip: int, num_classes: int, upsample: bool):
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose3d(below, skip, 2, stride=2) if upsample else nn.Conv3d(below, skip, 3, padding=1), nn.PReLU(skip)
        )
        self.gate = AttentionGate(skip, gate_channels=below, inter_channels=max(skip // 2, 1))
        self.convs = ResidualConvStage(2 * skip, 2 * skip, 3)
        self.head = nn.Conv3d(2 * skip, num_classes, 1)

    def forward(self, x, skip):
        gated = self.gate(x, skip)
        x = self.convs(torch.cat((self.up(x), gated), dim=1))
        return x, self.head(x)


class MPUDecoder(nn.Module):
    def __init__(self, features, num_classes: int, deep_supervision: bool):
        super().__init__()
        self.deep_supervision = deep_supervision
        # level 4 (1/8, no upsampling), then 1/4, 1/2, full resolution
        self.levels = nn.ModuleList([DecoderLevel(features[4], features[3], num_classes, upsample=False)])
        for i in (2, 1, 0):
            self.levels.append(DecoderLevel(2 * features[i + 1], features[i], num_classes, upsample=True))

    def forward(self, x, skips):
        logits = []
        for level, skip in zip(self.levels, skips[::-1]):
            x, out = level(x, skip)
            logits.append(out)
        logits = logits[::-1]  # highest resolution first
        if self.deep_supervision:
            return logits
        size = logits[0].shape[2:]
        probabilities = [torch.softmax(F.interpolate(o, size=size, mode="trilinear", align_corners=False) if o.shape[2:] != size else o, 1)
                         for o in logits]
        return torch.log(torch.stack(probabilities).mean(0).clamp_min(1e-8))


class MPUNet(nn.Module):
    """MPU-Net; nnU-Net plans may pass their topology keys, which it ignores (it has its own, patch divisible by 8)."""

    #: resolution of each deep-supervision output relative to the input, highest first
    deep_supervision_scales = ((1.0, 1.0, 1.0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (0.125, 0.125, 0.125))

    def __init__(self, input_channels: int, num_classes: int, conv_op=nn.Conv3d, features=FEATURES,
                 deep_supervision: bool = False, dropout: float = 0.2, **plan_topology):
        super().__init__()
        if conv_dims(conv_op) != 3:
            raise InputError("MPU-Net is a 3D network; use a 3d_fullres configuration")
        f = list(features)
        self.stages = nn.ModuleList([ResidualConvStage(input_channels, f[0], 2)])
        self.downs = nn.ModuleList()
        for i in range(1, 5):
            self.downs.append(down_block(f[i - 1], f[i], stride=2 if i < 4 else 1))
            self.stages.append(ResidualConvStage(f[i], f[i], 2, dropout))
        self.bottleneck = PAMBottleneck(f[4])
        self.decoder = MPUDecoder(f, num_classes, deep_supervision)

    def forward(self, x):
        skips = [self.stages[0](x)]
        for down, stage in zip(self.downs, self.stages[1:]):
            skips.append(stage(down(skips[-1])))
        return self.decoder(self.bottleneck(skips.pop()), skips)
