"""The networks, each constructible by nnU-Net v2 from plans (``network_class_name`` = ``attumamba.nets.<Class>``)."""

from .checkpoint import load_published_weights
from .lightmunet import LightMUNet
from .mambaahnet import MambaAHNet
from .mpunet import MPUNet
from .plans import architecture_entry, plans_with_network
from .registry import NETWORKS, NetworkSpec, network_spec
from .umamba import AttUMamba, AttUMambaEnc, UMambaBot, UMambaEnc

__all__ = [
    "NETWORKS",
    "AttUMamba",
    "AttUMambaEnc",
    "LightMUNet",
    "MPUNet",
    "MambaAHNet",
    "NetworkSpec",
    "UMambaBot",
    "UMambaEnc",
    "architecture_entry",
    "load_published_weights",
    "network_spec",
    "plans_with_network",
]
