"""Record the facts the MPU-Net tests check against, from the released code (run by hand).

    python Testing/backend/data/record_mpunet_release.py /path/to/MP-UNet [commit]

Imports ``models/MPUNet.py`` from a checkout of Stefan-Yu404/MP-UNet (the release's own code,
which this project does not contain), builds ``MPUNet(in_channel=1, out_channel=2)`` and writes
``mpunet_release.json``: its state-dict keys and shapes, its parameter count, the modules its
forward never calls, and its eval-mode output for seeded stand-in weights and input.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from release_weights import DATA, synthetic_state_dict  # noqa: E402

WEIGHT_SEED, INPUT_SEED, INPUT_SHAPE = 0, 1, (1, 1, 16, 16, 16)


def main(checkout: Path, commit: str) -> None:
    spec = importlib.util.spec_from_file_location("release_mpunet", checkout / "models" / "MPUNet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.MPUNet(in_channel=1, out_channel=2).eval()
    shapes = {key: list(value.shape) for key, value in net.state_dict().items()}

    called = set()
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: called.add(name)) for name, m in net.named_children()]
    net.load_state_dict(synthetic_state_dict(shapes, WEIGHT_SEED))
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(INPUT_SEED))
    with torch.no_grad():
        probabilities = net(x)
    for hook in hooks:
        hook.remove()
    unused = [name for name, _ in net.named_children() if name not in called]

    record = {
        "source": f"Stefan-Yu404/MP-UNet@{commit} models/MPUNet.py, MPUNet(in_channel=1, out_channel=2)",
        "state_dict": shapes,
        "parameters": sum(p.numel() for p in net.parameters()),
        "unused_modules": {name: sum(p.numel() for p in getattr(net, name).parameters()) for name in unused},
        "reference": {"weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED, "input_shape": list(INPUT_SHAPE),
                      "foreground_probability": [round(v, 6) for v in probabilities[0, 1].flatten().tolist()]},
    }
    (DATA / "mpunet_release.json").write_text(compact_json(record))


def compact_json(record: dict) -> str:
    """One line per top-level entry, and one per state-dict key: readable diffs, small file."""
    lines = []
    for key, value in record.items():
        if key == "state_dict":
            inner = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{json.dumps(key)}: {{\n{inner}\n }}")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value)}")
    return "{\n " + ",\n ".join(lines) + "\n}\n"


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "unknown")
