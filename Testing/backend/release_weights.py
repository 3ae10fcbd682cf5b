"""Stand-in weights for a released network, made from its recorded key/shape list.

No trained checkpoint of the released networks is available offline; a loader test needs a
state dict with the release's exact names and shapes, and a reference-output test needs the
same tensors on both sides. ``synthetic_state_dict`` draws them from a seeded generator, scaled
like trained weights (unit-variance activations, BatchNorm statistics near 0 / 1), so the same
seed gives the same dict here and in the script that recorded the release's output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"


def release_record(name: str) -> dict:
    """A recorded release (``data/<name>.json``): key/shape list, parameter counts, reference output."""
    return json.loads((DATA / f"{name}.json").read_text())


def synthetic_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    randn = lambda shape: torch.randn(shape, generator=generator)  # noqa: E731
    state = {}
    for key, shape in shapes.items():
        name = key.rsplit(".", 1)[-1]
        if name == "num_batches_tracked":
            state[key] = torch.tensor(1)
        elif name == "running_var":
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif name == "gamma":  # DANet's attention weight: nonzero, so the attention path counts
            state[key] = torch.full(shape, 0.5)
        elif len(shape) >= 2:  # conv / linear weights
            state[key] = randn(shape) / math.sqrt(math.prod(shape[1:]))
        elif name == "weight":  # BatchNorm scale, PReLU slope
            state[key] = 1.0 + 0.1 * randn(shape)
        else:  # biases, running means
            state[key] = 0.1 * randn(shape)
    return state
