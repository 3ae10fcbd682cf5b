"""LightM-UNet as released (2D/3D): RVM layers, residual Mamba blocks, additive skips.

Faithful to the released class (attribute names included): DWConv stem, encoder levels of
ResMambaBlocks [1, 2, 2, 4] whose downsampling is an RVM layer (C -> 2C) then max-pooling,
a decoder that adds (does not concatenate) the skips after a 1×1 conv and linear upsampling,
ResUpBlocks with a learnable adjustment factor, a GroupNorm-ReLU-DWConv head, and no deep
supervision. The released defaults give about 5.0 M parameters, not the paper's 1.87 M;
``init_filters`` and ``blocks_down`` reach the lightweight sizes (see docs/networks.md).

The release builds every convolution with MONAI's ``Convolution(conv_only=True)``, a Sequential
holding the conv as ``conv``; ours are wrapped the same way, so a released state dict has our
keys (``convInit.0.conv.weight``, ``up_samples.0.0.conv.weight``...). State dicts written before
that wrapping (``convInit.depth_conv.weight``, ``up_samples.0.0.weight``) are renamed on load.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from ..ssm import Mamba
from .blocks import conv_dims, run_in_fp32


def _conv(dims: int):
    return nn.Conv3d if dims == 3 else nn.Conv2d


def conv_only(conv: nn.Module) -> nn.Sequential:
    """``conv`` under the name ``conv``, as MONAI's ``Convolution(conv_only=True)`` holds it in the release."""
    return nn.Sequential(OrderedDict(conv=conv))


def dw_conv(dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False) -> nn.Sequential:
    """Depthwise k×k conv then pointwise 1×1 conv (the bias flag applies to both)."""
    conv = _conv(dims)
    return nn.Sequential(
        conv_only(conv(in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=bias)),
        conv_only(conv(in_channels, out_channels, 1, bias=bias)),
    )


#: key renames from our first layout (plain convs) to the release's (pattern, replacement)
FIRST_LAYOUT_RENAMES = (
    (re.compile(r"\.depth_conv\.(weight|bias)$"), r".0.conv.\1"),
    (re.compile(r"\.point_conv\.(weight|bias)$"), r".1.conv.\1"),
    (re.compile(r"^(up_samples\.\d+\.0)\.(weight|bias)$"), r"\1.conv.\2"),
)


def release_key(key: str) -> str:
    """The release's name for a key of our first layout (other keys are returned unchanged)."""
    for pattern, replacement in FIRST_LAYOUT_RENAMES:
        key = pattern.sub(replacement, key)
    return key


class RVMLayer(nn.Module):
    """Residual Vision Mamba layer: LN -> Mamba + s·tokens -> the same LN -> Linear(in -> out)."""

    def __init__(self, input_dim: int, output_dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(input_dim)
        self.mamba = Mamba(d_model=input_dim, d_state=d_state, d_conv=d_conv, expand=expand)
        self.proj = nn.Linear(input_dim, output_dim)
        self.skip_scale = nn.Parameter(torch.ones(1))

    @run_in_fp32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        tokens = x.reshape(batch, channels, -1).transpose(-1, -2)
        mixed = self.mamba(self.norm(tokens)) + self.skip_scale * tokens
        out = self.proj(self.norm(mixed))
        return out.transpose(-1, -2).reshape(batch, -1, *spatial)


def rvm_down(dims: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """RVM layer at the higher resolution, then 2× max-pooling."""
    pool = nn.MaxPool3d(2, 2) if dims == 3 else nn.MaxPool2d(2, 2)
    return nn.Sequential(RVMLayer(in_channels, out_channels), pool)


class ResMambaBlock(nn.Module):
    """x + RVM(ReLU(GN(RVM(ReLU(GN(x))))))."""

    def __init__(self, channels: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.act = nn.ReLU(inplace=True)
        self.conv1 = RVMLayer(channels, channels)
        self.conv2 = RVMLayer(channels, channels)

    def forward(self, x):
        identity = x
        x = self.conv1(self.act(self.norm1(x)))
        x = self.conv2(self.act(self.norm2(x)))
        return x + identity


class ResUpBlock(nn.Module):
    """ReLU(GN(DWConv(ReLU(GN(x))) + s·x)) with a learnable adjustment factor s."""

    def __init__(self, dims: int, channels: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.act = nn.ReLU(inplace=True)
        self.conv = dw_conv(dims, channels, channels, kernel_size=3)
        self.skip_scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        identity = x
        x = self.conv(self.act(self.norm1(x))) + self.skip_scale * identity
        return self.act(self.norm2(x))


class _NoDeepSupervision:
    """Stands in for ``decoder`` so nnU-Net can switch deep supervision off; LightM-UNet has none."""

    @property
    def deep_supervision(self) -> bool:
        return False

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        if enabled:
            raise InputError("LightM-UNet has no deep supervision; train it with a no-deep-supervision trainer")


def _rename_first_layout(module: nn.Module, state_dict: dict, prefix: str, *_) -> None:
    """Before a load: give the keys of our first layout the release's names (in place, as torch expects)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        renamed = prefix + release_key(key[len(prefix):])
        if renamed != key and renamed not in state_dict:
            state_dict[renamed] = state_dict.pop(key)


class LightMUNet(nn.Module):
    """LightM-UNet; nnU-Net plans may pass their topology keys, which this network ignores (as released)."""

    def __init__(self, input_channels: int, num_classes: int, conv_op=nn.Conv3d, init_filters: int = 32,
                 blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1), deep_supervision: bool = False, **plan_topology):
        super().__init__()
        if deep_supervision:
            raise InputError("LightM-UNet has no deep supervision; build it with deep_supervision=False")
        dims = conv_dims(conv_op)
        self.dims, self.blocks_up = dims, tuple(blocks_up)
        self.convInit = dw_conv(dims, input_channels, init_filters, kernel_size=3)
        self.down_layers = nn.ModuleList()
        for level, n_blocks in enumerate(blocks_down):
            channels = init_filters * 2**level
            downsample = rvm_down(dims, channels // 2, channels) if level > 0 else nn.Identity()
            self.down_layers.append(nn.Sequential(downsample, *[ResMambaBlock(channels) for _ in range(n_blocks)]))
        self.up_layers, self.up_samples = nn.ModuleList(), nn.ModuleList()
        n_up = len(blocks_up)
        for level in range(n_up):
            channels = init_filters * 2 ** (n_up - level)
            self.up_layers.append(nn.Sequential(*[ResUpBlock(dims, channels // 2) for _ in range(blocks_up[level])]))
            self.up_samples.append(nn.Sequential(conv_only(_conv(dims)(channels, channels // 2, 1, bias=False))))
        self.conv_final = nn.Sequential(
            nn.GroupNorm(8, init_filters), nn.ReLU(inplace=True), dw_conv(dims, init_filters, num_classes, kernel_size=1, bias=True)
        )
        self.decoder = _NoDeepSupervision()
        self.register_load_state_dict_pre_hook(_rename_first_layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convInit(x)
        skips = []
        for layer in self.down_layers:
            x = layer(x)
            skips.append(x)
        skips.pop()
        mode = "trilinear" if self.dims == 3 else "bilinear"
        for up_sample, up_layer in zip(self.up_samples, self.up_layers):
            x = F.interpolate(up_sample(x), scale_factor=2, mode=mode, align_corners=False)
            x = up_layer(x + skips.pop())
        return self.conv_final(x)
