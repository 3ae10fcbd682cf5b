"""U-Mamba Bot/Enc (March-2024 design) and Att-UMamba, built from nnU-Net v2 plans.

The layer order, module names and the block-count rule follow the published code, so its
checkpoints load unchanged (the decoder keeps the encoder as a submodule, which is where
the published ``decoder.encoder.*`` keys come from). Att-UMamba adds a 3D attention gate on
every skip; everything else is U-Mamba.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from ..errors import InputError
from .blocks import AttentionGate, MambaLayer, UpsampleLayer, _tuple, conv_dims, residual_stage
from .plans import apply_block_count_rule, channel_token_stages, feature_sizes


class UNetResEncoder(nn.Module):
    """Residual encoder: stem, then one residual stage per resolution; optionally a Mamba after each stage."""

    def __init__(self, input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                 n_blocks_per_stage, block_kwargs, mamba_layers: Sequence[nn.Module] | None = None):
        super().__init__()
        dims = conv_dims(conv_op)
        self.conv_op, self.output_channels = conv_op, list(features_per_stage)
        self.kernel_sizes = [_tuple(k, dims) for k in kernel_sizes]
        self.strides = [_tuple(s, dims) for s in strides]
        self.block_kwargs = block_kwargs
        # stem: the same residual stage at full resolution (BasicResBlock + BasicBlockDs)
        self.stem = residual_stage(conv_op, input_channels, features_per_stage[0], n_blocks_per_stage[0],
                                   self.kernel_sizes[0], 1, block_kwargs)
        channels = features_per_stage[0]
        stages = []
        for s in range(n_stages):
            stages.append(residual_stage(conv_op, channels, features_per_stage[s], n_blocks_per_stage[s],
                                         self.kernel_sizes[s], self.strides[s], block_kwargs))
            channels = features_per_stage[s]
        self.stages = nn.Sequential(*stages)
        self.mamba_layers = nn.ModuleList(mamba_layers) if mamba_layers is not None else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        skips = []
        for s, stage in enumerate(self.stages):
            x = stage(x)
            if self.mamba_layers is not None:
                x = self.mamba_layers[s](x)
            skips.append(x)
        return skips


class UNetResDecoder(nn.Module):
    """Upsample (nearest + 1×1), optionally gate the skip, concatenate, residual stage, one head per stage."""

    def __init__(self, encoder: UNetResEncoder, num_classes: int, n_blocks_per_stage: Sequence[int],
                 deep_supervision: bool, attention_gates: bool = False, last_stage_without_skip: bool = False):
        super().__init__()
        self.encoder = encoder  # a reference, as in the published code (hence decoder.encoder.* keys)
        self.deep_supervision = deep_supervision
        self.num_classes = num_classes
        n_enc = len(encoder.output_channels)
        conv_op = encoder.conv_op
        stages, upsample_layers, seg_layers, gates = [], [], [], []
        self.concat = []
        for s in range(1, n_enc):
            below, skip = encoder.output_channels[-s], encoder.output_channels[-(s + 1)]
            concat = not (last_stage_without_skip and s == n_enc - 1)
            self.concat.append(concat)
            upsample_layers.append(UpsampleLayer(conv_op, below, skip, encoder.strides[-s]))
            stages.append(residual_stage(conv_op, 2 * skip if concat else skip, skip, n_blocks_per_stage[s - 1],
                                         encoder.kernel_sizes[-(s + 1)], 1, encoder.block_kwargs))
            seg_layers.append(conv_op(skip, num_classes, 1, 1, 0, bias=True))
            if attention_gates:
                gates.append(AttentionGate(skip))
        self.stages = nn.ModuleList(stages)
        self.upsample_layers = nn.ModuleList(upsample_layers)
        self.seg_layers = nn.ModuleList(seg_layers)
        self.attention_gates = nn.ModuleList(gates) if attention_gates else None

    def forward(self, skips: list[torch.Tensor]):
        x = skips[-1]
        outputs = []
        for s, (upsample, stage) in enumerate(zip(self.upsample_layers, self.stages)):
            x = upsample(x)
            if self.concat[s]:
                skip = skips[-(s + 2)]
                if self.attention_gates is not None:
                    skip = self.attention_gates[s](x, skip)
                x = torch.cat((x, skip), dim=1)
            x = stage(x)
            if self.deep_supervision or s == len(self.stages) - 1:
                outputs.append(self.seg_layers[s](x))
        outputs = outputs[::-1]  # highest resolution first
        return outputs if self.deep_supervision else outputs[0]


class _UMambaBase(nn.Module):
    """nnU-Net-plans constructor shared by every U-Mamba variant."""

    attention = False
    mamba_in_encoder = False

    def __init__(self, input_channels: int, n_stages: int, features_per_stage, conv_op, kernel_sizes, strides,
                 n_conv_per_stage=None, num_classes: int = 2, n_conv_per_stage_decoder=None, conv_bias: bool = True,
                 norm_op=None, norm_op_kwargs=None, dropout_op=None, dropout_op_kwargs=None, nonlin=None,
                 nonlin_kwargs=None, deep_supervision: bool = False, stem_channels=None, input_size=None,
                 n_blocks_per_stage=None):
        super().__init__()
        dims = conv_dims(conv_op)
        if self.attention and dims != 3:
            raise InputError("Att-UMamba's attention gates are 3D (Conv3d/BatchNorm3d), as in the published code")
        n_blocks = list(n_blocks_per_stage or n_conv_per_stage or [2] * n_stages)
        n_blocks_decoder = list(n_conv_per_stage_decoder or [2] * (n_stages - 1))
        n_blocks, n_blocks_decoder = apply_block_count_rule(n_blocks, n_blocks_decoder, n_stages)
        block_kwargs = dict(
            conv_bias=conv_bias,
            norm_op=norm_op or (nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d),
            norm_op_kwargs=norm_op_kwargs if norm_op_kwargs is not None else {"eps": 1e-5, "affine": True},
            dropout_op=dropout_op, dropout_op_kwargs=dropout_op_kwargs,
            nonlin=nonlin or nn.LeakyReLU, nonlin_kwargs=nonlin_kwargs if nonlin_kwargs is not None else {"inplace": True},
        )
        encoder_mambas = self._encoder_mamba_layers(n_stages, features_per_stage, strides, input_size, dims)
        self.encoder = UNetResEncoder(input_channels, n_stages, features_per_stage, conv_op, kernel_sizes, strides,
                                      n_blocks, block_kwargs, encoder_mambas)
        if encoder_mambas is None:
            self.mamba_layer = MambaLayer(features_per_stage[-1])
        self.decoder = UNetResDecoder(self.encoder, num_classes, n_blocks_decoder, deep_supervision,
                                      attention_gates=self.attention, last_stage_without_skip=dims == 2)

    def _encoder_mamba_layers(self, n_stages, features, strides, input_size, dims) -> list[nn.Module] | None:
        """Enc: a Mamba per stage (2D: alternating, the last included); a stage whose feature map
        has no more voxels than channels tokenises channels instead (d_model = voxels)."""
        if not self.mamba_in_encoder:
            return None
        if input_size is None:
            raise InputError("U-Mamba Enc needs input_size (the plan's patch size) to choose token modes")
        layers: list[nn.Module] = []
        sizes = feature_sizes(input_size, strides)
        for s, channel_token in enumerate(channel_token_stages(input_size, strides, features)):
            if dims == 2 and (s % 2 == 1) == (n_stages % 2 == 1):
                layers.append(nn.Identity())
            elif channel_token:
                layers.append(MambaLayer(math.prod(sizes[s]), channel_token=True))
            else:
                layers.append(MambaLayer(features[s]))
        return layers

    def forward(self, x: torch.Tensor):
        skips = self.encoder(x)
        if not self.mamba_in_encoder:
            skips[-1] = self.mamba_layer(skips[-1])
        return self.decoder(skips)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        InitWeights_He(1e-2)(module)


class UMambaBot(_UMambaBase):
    """U-Mamba Bot: residual U-Net with one Mamba layer at the bottleneck (2D or 3D)."""


class UMambaEnc(_UMambaBase):
    """U-Mamba Enc: a Mamba layer after every encoder stage (alternating stages in 2D)."""

    mamba_in_encoder = True


class AttUMamba(_UMambaBase):
    """Att-UMamba (the project default): U-Mamba Bot + a 3D attention gate on every skip."""

    attention = True


class AttUMambaEnc(_UMambaBase):
    """Att-UMamba on the U-Mamba Enc backbone."""

    attention = True
    mamba_in_encoder = True
