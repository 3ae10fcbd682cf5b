"""MPU-Net (3D) as released in Stefan-Yu404/MP-UNet (``models/MPUNet.py``), under its module names.

With the release's widths f = (16, 32, 64, 128, 256):
- Encoder ("long range" = stage output plus its input): ``encoder1..5`` are 2 × (3×3×3 conv +
  PReLU); stages 2–5 are followed by element-wise dropout (0.2). ``down1..3`` (max-pool 3/s1,
  conv k2 s2, BN, ELU) halve the size; ``down4`` (f3→f4) and ``down5`` (f4→2·f4) use k3 s1,
  so the bottleneck stays at 1/8.
- Bottleneck ``PCL``: conv 2·f4→f4, BN, PReLU, DANet position attention, conv, BN, PReLU.
- Decoder: at 1/8, ``decoder1(long range 4) + PCL``; at 1/4, 1/2 and 1, the up-conv (``up2..4``,
  transposed conv to twice the skip's width, PReLU) is the "short range", and the level is
  ``decoder(cat(short range, skip)) + short range`` (decoders: 3 × (conv + PReLU)). Each level's
  result is gated (``Att4..1``) by the same-resolution signal (PCL output, then the short range),
  dropped out (not at full resolution) and read out by a 1×1×1 head (``map1..4``).
- Prediction: the mean of the four heads' softmax maps, each upsampled trilinearly to full size.
- ELU is built as in the release, ``ELU(out_channels)``: alpha equals the channel count.

nnU-Net adaptation (docs/networks.md): outputs are logits (the log of the fused probabilities,
which nnU-Net's softmax turns back into them); with deep supervision the list is [fused, head
1/2, head 1/4, head 1/8] at the heads' own resolutions, the shapes nnU-Net's target list has, and
the MPU-Net trainer's loss upsamples them to full resolution as the release does. Inputs with
more than one channel get a 1×1×1 projection for the first residual (the release broadcasts its
one channel). The release also builds ``decoder5``, ``up1`` and ``map5``, which its forward never
calls; ours has no such modules and drops their keys when a release state dict is loaded.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from .blocks import AttentionGate, conv_dims

FEATURES = (16, 32, 64, 128, 256)
DROPOUT = 0.2
#: modules the release constructs but never calls; their keys are dropped on load
UNUSED_RELEASE_MODULES = ("decoder5.", "up1.", "map5.")


def conv_prelu_stack(in_channels: int, channels: int, n_convs: int) -> nn.Sequential:
    """n × (3×3×3 conv + per-channel PReLU): the release's encoder and decoder stages."""
    layers = []
    for i in range(n_convs):
        layers += [nn.Conv3d(in_channels if i == 0 else channels, channels, 3, padding=1), nn.PReLU(channels)]
    return nn.Sequential(*layers)


class EncoderStage(nn.Module):
    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.encoder_stage = conv_prelu_stack(in_channels, channels, 2)

    def forward(self, x):
        return self.encoder_stage(x)


class DecoderStage(nn.Module):
    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.decoder_stage = conv_prelu_stack(in_channels, channels, 3)

    def forward(self, x):
        return self.decoder_stage(x)


class Down(nn.Module):
    """Max-pool (3, stride 1), conv (k2 s2 halves the size; k3 s1 keeps it), BN, ELU(alpha = width)."""

    def __init__(self, in_channels: int, channels: int, halve: bool):
        super().__init__()
        kernel, stride, padding = (2, 2, 0) if halve else (3, 1, 1)
        self.down_conv = nn.Sequential(
            nn.MaxPool3d(3, stride=1, padding=1), nn.Conv3d(in_channels, channels, kernel, stride=stride, padding=padding),
            nn.BatchNorm3d(channels), nn.ELU(alpha=float(channels)),
        )

    def forward(self, x):
        return self.down_conv(x)


class Up(nn.Module):
    """Transposed conv (k2 s2) + per-channel PReLU."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.up_conv = nn.Sequential(nn.ConvTranspose3d(in_channels, channels, 2, stride=2), nn.PReLU(channels))

    def forward(self, x):
        return self.up_conv(x)


class Head(nn.Module):
    """1×1×1 conv to class logits (the release's ``Map`` also upsamples and softmaxes; we do that outside)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.map_conv = nn.Sequential(nn.Conv3d(in_channels, num_classes, 1))

    def forward(self, x):
        return self.map_conv(x)


class PositionAttention(nn.Module):
    """DANet position attention over all voxels: x + γ · V softmax(QᵀK)ᵀ, γ learned from 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.query_conv = nn.Conv3d(channels, channels // 8, 1)
        self.key_conv = nn.Conv3d(channels, channels // 8, 1)
        self.value_conv = nn.Conv3d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        batch, channels, *spatial = x.shape
        q = self.query_conv(x).flatten(2).transpose(1, 2)     # (B, N, C/8)
        k = self.key_conv(x).flatten(2)                       # (B, C/8, N)
        attention = torch.softmax(torch.bmm(q, k), dim=-1)    # (B, N, N): row i attends over j
        v = self.value_conv(x).flatten(2)                     # (B, C, N)
        out = torch.bmm(v, attention.transpose(1, 2)).reshape(batch, channels, *spatial)
        return self.gamma * out + x


class PAMBottleneck(nn.Module):
    """Conv 2C→C, BN, PReLU (one slope), position attention, conv C→C, BN, PReLU (one slope)."""

    def __init__(self, channels: int):
        super().__init__()
        self.attn = nn.Sequential(
            nn.Conv3d(2 * channels, channels, 3, padding=1), nn.BatchNorm3d(channels), nn.PReLU(),
            PositionAttention(channels),
            nn.Conv3d(channels, channels, 3, padding=1), nn.BatchNorm3d(channels), nn.PReLU(),
        )

    def forward(self, x):
        return self.attn(x)


def _gate(channels: int) -> AttentionGate:
    """The release's ``AttentionBlock(C, C, C/2)``: its projections are named ``Wx`` and ``Wg``."""
    return AttentionGate(channels, inter_channels=max(channels // 2, 1), branch_names=("Wx", "Wg"))


def _initialize_as_released(module: nn.Module) -> None:
    """The release's ``init_model``: Kaiming-normal (a = 0.25) conv weights, zero conv biases."""
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, 0.25)
        nn.init.zeros_(module.bias)


def _drop_unused_release_keys(module, state_dict, prefix, *args) -> None:
    for key in [k for k in state_dict if k.startswith(tuple(prefix + name for name in UNUSED_RELEASE_MODULES))]:
        del state_dict[key]


class MPUNet(nn.Module):
    """MPU-Net; nnU-Net plans may pass their topology keys, which it ignores (its own topology, patch divisible by 8)."""

    ignored_release_prefixes = UNUSED_RELEASE_MODULES   # see load_published_weights

    #: resolution of each deep-supervision output relative to the input (the fused output first)
    deep_supervision_scales = ((1.0, 1.0, 1.0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), (0.125, 0.125, 0.125))

    def __init__(self, input_channels: int, num_classes: int, conv_op=nn.Conv3d, features=FEATURES,
                 deep_supervision: bool = False, dropout: float = DROPOUT, **plan_topology):
        super().__init__()
        if conv_dims(conv_op) != 3:
            raise InputError("MPU-Net is a 3D network; use a 3d_fullres configuration")
        f = [int(c) for c in features]
        if len(f) != 5:
            raise InputError(f"MPU-Net has five encoder stages; give five widths (the release's: {FEATURES}), not {f}")
        self.decoder = SimpleNamespace(deep_supervision=deep_supervision)  # where nnU-Net switches deep supervision
        self.encoder1 = EncoderStage(input_channels, f[0])
        self.input_projection = nn.Conv3d(input_channels, f[0], 1) if input_channels not in (1, f[0]) else None
        self.encoder2, self.encoder3 = EncoderStage(f[1], f[1]), EncoderStage(f[2], f[2])
        self.encoder4, self.encoder5 = EncoderStage(f[3], f[3]), EncoderStage(f[4], f[4])
        self.decoder1 = DecoderStage(f[3], f[4])
        self.decoder2, self.decoder3 = DecoderStage(f[3] + f[2], f[3]), DecoderStage(f[2] + f[1], f[2])
        self.decoder4 = DecoderStage(f[1] + f[0], f[1])
        self.down1, self.down2, self.down3 = Down(f[0], f[1], True), Down(f[1], f[2], True), Down(f[2], f[3], True)
        self.down4, self.down5 = Down(f[3], f[4], False), Down(f[4], 2 * f[4], False)
        self.up2, self.up3, self.up4 = Up(f[4], f[3]), Up(f[3], f[2]), Up(f[2], f[1])
        self.map4, self.map3 = Head(f[1], num_classes), Head(f[2], num_classes)
        self.map2, self.map1 = Head(f[3], num_classes), Head(f[4], num_classes)
        self.Att4, self.Att3, self.Att2, self.Att1 = _gate(f[4]), _gate(f[3]), _gate(f[2]), _gate(f[1])
        self.PCL = PAMBottleneck(f[4])
        self.dropout = nn.Dropout(dropout)
        self.apply(_initialize_as_released)
        self.register_load_state_dict_pre_hook(_drop_unused_release_keys)

    def _encode(self, x):
        """(long range 1–4, bottleneck output)."""
        first = self.input_projection(x) if self.input_projection is not None else x  # 1 channel: broadcast
        long_range = [self.encoder1(x) + first]
        short_range = self.down1(long_range[0])
        stages = ((self.encoder2, self.down2), (self.encoder3, self.down3), (self.encoder4, self.down4),
                  (self.encoder5, self.down5))
        for encoder, down in stages:
            long_range.append(self.dropout(encoder(short_range) + short_range))
            short_range = down(long_range[-1])
        return long_range[:4], self.PCL(short_range)

    def _decode(self, long_range, bottom) -> list[torch.Tensor]:
        """The four heads' logits at their own resolutions, 1/8 first."""
        x = self.dropout(self.Att4(bottom, self.decoder1(long_range[3]) + bottom))
        heads = [self.map1(x)]
        levels = ((self.up2, self.decoder2, self.Att3, self.map2), (self.up3, self.decoder3, self.Att2, self.map3),
                  (self.up4, self.decoder4, self.Att1, self.map4))
        for i, (up, decoder, gate, head) in enumerate(levels):
            short_range = up(x)
            x = gate(short_range, decoder(torch.cat((short_range, long_range[2 - i]), dim=1)) + short_range)
            if i < 2:
                x = self.dropout(x)
            heads.append(head(x))
        return heads

    def forward(self, x: torch.Tensor):
        heads = self._decode(*self._encode(x))
        size = x.shape[2:]
        upsampled = [h if h.shape[2:] == size else F.interpolate(h, size=size, mode="trilinear", align_corners=False)
                     for h in heads]
        # log of the mean of the softmax maps, computed without leaving log space
        fused = torch.logsumexp(torch.stack([F.log_softmax(h, 1) for h in upsampled]), 0) - math.log(len(heads))
        if self.decoder.deep_supervision:
            return [fused, heads[2], heads[1], heads[0]]
        return fused
