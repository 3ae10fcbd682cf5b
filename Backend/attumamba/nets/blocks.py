"""Building blocks shared by the Mamba U-Nets, named as in the published code.

Module and attribute names (``conv1``, ``norm1``, ``conv3``, ``mamba_layer``, ``upsample_layers``
...) follow U-Mamba's March-2024 code so that its checkpoints load without renaming; the
residual block with an identity shortcut is dynamic-network-architectures' ``BasicBlockD``
itself, which is what U-Mamba uses.
"""

from __future__ import annotations

import functools

import torch
from dynamic_network_architectures.building_blocks.residual import BasicBlockD
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from ..ssm import Mamba


def _tuple(value, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * dims


def conv_dims(conv_op: type[nn.Module]) -> int:
    """2 for Conv2d, 3 for Conv3d."""
    if conv_op in (nn.Conv2d, nn.ConvTranspose2d):
        return 2
    if conv_op in (nn.Conv3d, nn.ConvTranspose3d):
        return 3
    raise InputError(f"conv_op must be Conv2d or Conv3d, not {conv_op}")


class BasicResBlock(nn.Module):
    """conv-norm-act-conv-norm plus an always-present 1×1 (strided) shortcut conv, then act."""

    def __init__(self, conv_op, input_channels, output_channels, norm_op, norm_op_kwargs,
                 kernel_size=3, padding=1, stride=1, use_1x1conv=True, nonlin=nn.LeakyReLU,
                 nonlin_kwargs=None, conv_bias=True):
        super().__init__()
        nonlin_kwargs = nonlin_kwargs or {"inplace": True}
        self.conv1 = conv_op(input_channels, output_channels, kernel_size, stride=stride, padding=padding, bias=conv_bias)
        self.norm1 = norm_op(output_channels, **(norm_op_kwargs or {}))
        self.act1 = nonlin(**nonlin_kwargs)
        self.conv2 = conv_op(output_channels, output_channels, kernel_size, padding=padding, bias=conv_bias)
        self.norm2 = norm_op(output_channels, **(norm_op_kwargs or {}))
        self.act2 = nonlin(**nonlin_kwargs)
        self.conv3 = conv_op(input_channels, output_channels, kernel_size=1, stride=stride, bias=conv_bias) if use_1x1conv else None

    def forward(self, x):
        y = self.act1(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        shortcut = self.conv3(x) if self.conv3 is not None else x
        return self.act2(y + shortcut)


def residual_stage(conv_op, input_channels, output_channels, n_blocks, kernel_size, stride, block_kwargs) -> nn.Sequential:
    """One BasicResBlock (changes channels/resolution) followed by ``n_blocks - 1`` BasicBlockD."""
    kernel_size = _tuple(kernel_size, conv_dims(conv_op))
    first = BasicResBlock(
        conv_op, input_channels, output_channels, block_kwargs["norm_op"], block_kwargs["norm_op_kwargs"],
        kernel_size=kernel_size, padding=tuple(k // 2 for k in kernel_size), stride=stride,
        nonlin=block_kwargs["nonlin"], nonlin_kwargs=block_kwargs["nonlin_kwargs"], conv_bias=block_kwargs["conv_bias"],
    )
    rest = [
        BasicBlockD(conv_op, output_channels, output_channels, kernel_size, 1, **block_kwargs)
        for _ in range(n_blocks - 1)
    ]
    return nn.Sequential(first, *rest)


def run_in_fp32(forward):
    """Run a module's ``forward(x)`` in fp32 with autocast off, and hand fp32 on.

    Mamba's scan overflows in fp16 (U-Mamba's NaN reports), so every Mamba layer keeps fp32
    under AMP. Its output stays fp32, as in U-Mamba's released ``MambaLayer``: autocast casts
    it again for the next convolution, and a cast back to fp16 here would round the scan's
    result before the next layer sees it.
    """

    @functools.wraps(forward)
    def wrapper(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return forward(self, x.float())

    return wrapper


class MambaLayer(nn.Module):
    """Feature map -> tokens -> LayerNorm -> Mamba -> feature map, always in fp32, no residual.

    ``channel_token=False``: one token per voxel (C-order), d_model = channels.
    ``channel_token=True``: one token per channel, d_model = number of voxels (U-Mamba Enc's
    choice for stages whose feature map has no more voxels than channels).
    """

    def __init__(self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, channel_token: bool = False):
        super().__init__()
        self.dim = dim
        self.channel_token = channel_token
        self.norm = nn.LayerNorm(dim)
        self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand)

    @run_in_fp32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *spatial = x.shape
        flat = x.reshape(batch, channels, -1)
        tokens = flat if self.channel_token else flat.transpose(-1, -2)
        out = self.mamba(self.norm(tokens))
        out = out if self.channel_token else out.transpose(-1, -2)
        return out.reshape(batch, channels, *spatial)


class UpsampleLayer(nn.Module):
    """Nearest-neighbour upsampling by the encoder stride, then a 1×1 conv to the skip's width."""

    def __init__(self, conv_op, input_channels, output_channels, pool_op_kernel_size, mode="nearest"):
        super().__init__()
        self.conv = conv_op(input_channels, output_channels, kernel_size=1)
        self.pool_op_kernel_size = pool_op_kernel_size
        self.mode = mode

    def forward(self, x):
        x = F.interpolate(x, scale_factor=self.pool_op_kernel_size, mode=self.mode)
        return self.conv(x)


class AttentionGate(nn.Module):
    """Gate: x * sigmoid(BN(conv(ReLU(BN(W_g g) + BN(W_x x))))), with ``g`` at x's resolution.

    Att-UMamba's form is the default: width F for every conv. MPU-Net and Mamba-AHNet use an
    intermediate width (``inter_channels``); ``branch_names`` gives the two projections the
    names a release uses for them (MP-UNet: ``("Wx", "Wg")``), so its weights load as they are.
    """

    def __init__(self, channels: int, conv_op=nn.Conv3d, norm_op=nn.BatchNorm3d, inter_channels: int | None = None,
                 branch_names: tuple[str, str] = ("W_x", "W_g")):
        super().__init__()
        inter_channels = inter_channels or channels
        self.branch_names = branch_names
        x_name, g_name = branch_names
        for name in (g_name, x_name):
            setattr(self, name, nn.Sequential(conv_op(channels, inter_channels, kernel_size=1, bias=True),
                                              norm_op(inter_channels)))
        self.psi = nn.Sequential(conv_op(inter_channels, 1, kernel_size=1, bias=True), norm_op(1), nn.Sigmoid())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x`` scaled voxel-wise by a coefficient computed from ``x`` and the gating signal ``g``."""
        x_branch, g_branch = (getattr(self, name) for name in self.branch_names)
        attention = self.psi(self.relu(g_branch(g) + x_branch(x)))
        return x * attention
