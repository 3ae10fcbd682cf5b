"""Record the facts the LightM-UNet tests check against, from the released code (run by hand).

    pip install --no-deps monai   # the release builds its convolutions with MONAI's blocks
    python Testing/backend/data/record_lightmunet_release.py /path/to/LightM-UNet [commit]

Imports ``lightm-unet/nnunetv2/nets/LightMUNet.py`` from a checkout of MrBlankness/LightM-UNet
(the release's own code, which this project does not contain), builds it as its trainer does
(3D, ``init_filters=32``, ``blocks_down=[1, 2, 2, 4]``, ``blocks_up=[1, 1, 1]``; 2 input channels
and 2 classes, as for CT + PET) and writes ``lightmunet_release.json``: its state-dict keys and
shapes, its parameter count, and its eval-mode logits for seeded stand-in weights and input.
``mamba_ssm.Mamba`` only runs on CUDA, so ``attumamba.ssm.Mamba`` stands in for it (the same
parameters and outputs: Testing/backend/test_ssm_mamba.py).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from record_mpunet_release import compact_json  # noqa: E402
from release_weights import DATA, synthetic_state_dict  # noqa: E402

from attumamba.ssm import Mamba  # noqa: E402

WEIGHT_SEED, INPUT_SEED, INPUT_SHAPE = 0, 1, (1, 2, 16, 16, 16)
TRAINER_SETTINGS = {"spatial_dims": 3, "init_filters": 32, "in_channels": 2, "out_channels": 2,
                    "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]}


def main(checkout: Path, commit: str) -> None:
    sys.modules["mamba_ssm"] = types.SimpleNamespace(Mamba=Mamba)
    path = checkout / "lightm-unet" / "nnunetv2" / "nets" / "LightMUNet.py"
    spec = importlib.util.spec_from_file_location("release_lightmunet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.LightMUNet(**TRAINER_SETTINGS).eval()
    shapes = {key: list(value.shape) for key, value in net.state_dict().items()}
    net.load_state_dict(synthetic_state_dict(shapes, WEIGHT_SEED))
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(INPUT_SEED))
    with torch.no_grad():
        logits = net(x)
    record = {
        "source": f"MrBlankness/LightM-UNet@{commit} lightm-unet/nnunetv2/nets/LightMUNet.py, "
                  f"LightMUNet(**{TRAINER_SETTINGS}) (nnUNetTrainerLightMUNet's settings)",
        "state_dict": shapes,
        "parameters": sum(p.numel() for p in net.parameters()),
        "reference": {"weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED, "input_shape": list(INPUT_SHAPE),
                      "lesion_minus_background_logit": [round(v, 5) for v in (logits[0, 1] - logits[0, 0]).flatten().tolist()]},
    }
    (DATA / "lightmunet_release.json").write_text(compact_json(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "unknown")
