"""Model names users type (``--model attumamba``) -> network classes, configurations, extra plan keys.

nnU-Net builds a network from ``network_class_name`` and ``arch_kwargs`` in the plans; this
table says which class each model name means, which configuration it trains in, and what it
needs beyond nnU-Net's standard keys (U-Mamba Enc needs the patch size to pick token modes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InputError


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    class_path: str
    configuration: str                 # the nnU-Net configuration it trains in
    deep_supervision: bool
    description: str
    needs_patch_size: bool = False     # arch_kwargs["input_size"] = the configuration's patch size
    extra_arch_kwargs: dict = field(default_factory=dict)

    def arch_kwargs(self, plan_arch_kwargs: dict, patch_size) -> dict:
        """The plans' arch_kwargs completed with what this network needs."""
        kwargs = {**plan_arch_kwargs, **self.extra_arch_kwargs}
        if self.needs_patch_size:
            kwargs["input_size"] = list(patch_size)
        return kwargs


NETWORKS = {
    spec.name: spec
    for spec in (
        NetworkSpec("attumamba", "attumamba.nets.AttUMamba", "3d_fullres", True,
                    "Att-UMamba: U-Mamba Bot with 3D attention gates on every skip (the default)"),
        NetworkSpec("attumamba-enc", "attumamba.nets.AttUMambaEnc", "3d_fullres", True,
                    "Att-UMamba on the U-Mamba Enc backbone", needs_patch_size=True),
        NetworkSpec("umamba-bot", "attumamba.nets.UMambaBot", "3d_fullres", True,
                    "U-Mamba Bot: residual U-Net with a Mamba layer at the bottleneck"),
        NetworkSpec("umamba-enc", "attumamba.nets.UMambaEnc", "3d_fullres", True,
                    "U-Mamba Enc: a Mamba layer after every encoder stage", needs_patch_size=True),
        NetworkSpec("lightmunet", "attumamba.nets.LightMUNet", "3d_fullres", False,
                    "LightM-UNet: RVM layers and residual Mamba blocks, additive skips, no deep supervision"),
        NetworkSpec("mambaahnet", "attumamba.nets.MambaAHNet", "2d", True,
                    "Mamba-AHNet: 2D attention-enhanced upsampling with Mamba in the decoder, slice by slice"),
        NetworkSpec("mpunet", "attumamba.nets.MPUNet", "3d_fullres", True,
                    "MPU-Net: position attention at the bottleneck, gated skips, fused multi-scale output"),
    )
}


def network_spec(name: str) -> NetworkSpec:
    try:
        return NETWORKS[name]
    except KeyError:
        raise InputError(f"unknown model architecture {name!r}; choose one of: {', '.join(NETWORKS)}") from None
