"""Model names users type (``--model attumamba``) -> network classes, configurations, extra plan keys.

nnU-Net builds a network from ``network_class_name`` and ``arch_kwargs`` in the plans; this
table says which class each model name means, which configuration it trains in, and what it
needs beyond nnU-Net's standard keys (U-Mamba Enc needs the patch size to pick token modes).
Networks with a fixed topology of their own (LightM-UNet, MPU-Net, Mamba-AHNet) ignore the
plan's stages; ``own_strides`` records theirs, because nnU-Net derives the deep-supervision
scales from ``arch_kwargs["strides"]`` and the patch must be divisible by their product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InputError


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    class_path: str
    configuration: str                 # the nnU-Net configuration it trains in by default
    deep_supervision: bool
    description: str
    dims: tuple[int, ...] = (3,)       # 2 and/or 3: which configurations it can be built for
    needs_patch_size: bool = False     # arch_kwargs["input_size"] = the configuration's patch size
    own_strides: tuple[int, ...] | None = None  # per-stage stride (all axes) of a fixed-topology network
    extra_arch_kwargs: dict = field(default_factory=dict)
    trainer: str = "nnUNetTrainerAttUMamba"  # the nnU-Net trainer with the paper's recipe
    renamed_kwargs: dict = field(default_factory=dict)  # plan key -> the name this network takes

    def arch_kwargs(self, plan_arch_kwargs: dict, patch_size) -> dict:
        """The plans' arch_kwargs completed with (or, for a fixed topology, replaced by) what this network needs."""
        dims = len(patch_size)
        if self.own_strides is not None:
            kwargs = {"conv_op": plan_arch_kwargs["conv_op"], "strides": [[s] * dims for s in self.own_strides]}
        else:
            kwargs = dict(plan_arch_kwargs)
        for old, new in self.renamed_kwargs.items():
            if old in kwargs:
                kwargs[new] = kwargs.pop(old)
        kwargs.update(self.extra_arch_kwargs)
        if self.needs_patch_size:
            kwargs["input_size"] = list(patch_size)
        return kwargs

    def patch_multiple(self, plan_strides) -> list[int]:
        """Per axis, the number every patch edge must be a multiple of (the product of the strides)."""
        if self.own_strides is not None:
            return [math.prod(self.own_strides)] * len(plan_strides[0])
        return [math.prod(stride[axis] for stride in plan_strides) for axis in range(len(plan_strides[0]))]


NETWORKS = {
    spec.name: spec
    for spec in (
        NetworkSpec("attumamba", "attumamba.nets.AttUMamba", "3d_fullres", True,
                    "Att-UMamba: U-Mamba Bot with 3D attention gates on every skip (the default)"),
        NetworkSpec("attumamba-enc", "attumamba.nets.AttUMambaEnc", "3d_fullres", True,
                    "Att-UMamba on the U-Mamba Enc backbone", needs_patch_size=True),
        NetworkSpec("umamba-bot", "attumamba.nets.UMambaBot", "3d_fullres", True,
                    "U-Mamba Bot: residual U-Net with a Mamba layer at the bottleneck", dims=(2, 3),
                    trainer="nnUNetTrainerUMamba"),
        NetworkSpec("umamba-enc", "attumamba.nets.UMambaEnc", "3d_fullres", True,
                    "U-Mamba Enc: a Mamba layer after every encoder stage", dims=(2, 3), needs_patch_size=True,
                    trainer="nnUNetTrainerUMambaNoAMP"),
        NetworkSpec("lightmunet", "attumamba.nets.LightMUNet", "3d_fullres", False,
                    "LightM-UNet as released (5.0 M parameters): RVM layers and residual Mamba blocks, additive skips",
                    dims=(2, 3), own_strides=(1, 2, 2, 2), trainer="nnUNetTrainerLightMUNet"),
        NetworkSpec("lightmunet-light", "attumamba.nets.LightMUNet", "3d_fullres", False,
                    "LightM-UNet at the paper's size class (1.7 M parameters: 24 filters, blocks 1,2,2,2)",
                    dims=(2, 3), own_strides=(1, 2, 2, 2), trainer="nnUNetTrainerLightMUNet",
                    extra_arch_kwargs={"init_filters": 24, "blocks_down": [1, 2, 2, 2]}),
        NetworkSpec("mambaahnet", "attumamba.nets.MambaAHNet", "2d", True,
                    "Mamba-AHNet: 2D attention-enhanced upsampling with Mamba in the decoder, slice by slice",
                    dims=(2,), own_strides=(1, 2, 2, 2, 2), trainer="nnUNetTrainerMambaAHNet",
                    extra_arch_kwargs={"reconstruction": True}),
        NetworkSpec("mpunet", "attumamba.nets.MPUNet", "3d_fullres", True,
                    "MPU-Net: position attention at the bottleneck, gated skips, fused multi-scale output",
                    own_strides=(1, 2, 2, 2, 1), trainer="nnUNetTrainerMPUNet"),
        NetworkSpec("resenc", "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet", "3d_fullres", True,
                    "Baseline without Mamba: nnU-Net's residual-encoder U-Net on the same plan", dims=(2, 3),
                    trainer="nnUNetTrainer", renamed_kwargs={"n_conv_per_stage": "n_blocks_per_stage"}),
    )
}


def network_spec(name: str) -> NetworkSpec:
    try:
        return NETWORKS[name]
    except KeyError:
        raise InputError(f"unknown model architecture {name!r}; choose one of: {', '.join(NETWORKS)}") from None
