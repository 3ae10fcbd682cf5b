"""Load weights trained with the published U-Mamba / Att-UMamba code (March-2024 layout).

Their state dicts hold each encoder tensor twice (``encoder.*`` and ``decoder.encoder.*``)
and each BasicBlockD conv/norm twice (``convN.conv.*`` / ``convN.all_modules.0.*``). Our
modules have the same nesting, so a full published dict loads as is; this loader also
accepts dicts where one copy of a duplicated tensor was dropped, nnU-Net checkpoint files
(``network_weights``; read weights-only by ``checkpoint_file``) and DistributedDataParallel
prefixes. The January-2024 code used other module names (``decoder.transpconvs``, ``ln``,
``mamba``); such weights are recognised and refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from .checkpoint_file import read_checkpoint

# (pattern, replacement) pairs that map a key to the other name of the same tensor
ALIASES = (
    (r"^decoder\.encoder\.", "encoder."),
    (r"^encoder\.", "decoder.encoder."),
    (r"\.conv(\d)\.all_modules\.0\.", r".conv\1.conv."),
    (r"\.conv(\d)\.conv\.", r".conv\1.all_modules.0."),
    (r"\.conv(\d)\.all_modules\.1\.", r".conv\1.norm."),
    (r"\.conv(\d)\.norm\.", r".conv\1.all_modules.1."),
)


def _aliases(key: str) -> list[str]:
    names = {key}
    for _ in range(2):  # a key may need two substitutions (decoder.encoder + all_modules)
        for pattern, replacement in ALIASES:
            names |= {re.sub(pattern, replacement, name) for name in names}
    names.discard(key)
    return sorted(names)


# top-level names that only the January-2024 U-Mamba code has
JANUARY_2024_MARKERS = ("decoder.transpconvs.", "ln.", "mamba.")


def published_state_dict(source: dict | str | Path) -> dict[str, torch.Tensor]:
    """The network weights of a checkpoint file or dict, without a DDP ``module.`` prefix."""
    if isinstance(source, (str, Path)):
        source = read_checkpoint(source)
    weights = source
    if isinstance(source, dict):   # nnU-Net: 'network_weights'; the MPU-Net release: 'net'; others: 'state_dict'
        weights = next((source[k] for k in ("network_weights", "net", "state_dict") if isinstance(source.get(k), dict)),
                       source)
    if not isinstance(weights, dict):
        raise InputError("the checkpoint holds no state dict (expected a dict, or one under 'network_weights', "
                         "'net' or 'state_dict')")
    return {key.removeprefix("module."): value for key, value in weights.items()}


def load_published_weights(model: nn.Module, source: dict | str | Path) -> None:
    """Load published weights into ``model`` strictly, filling a missing duplicate from its twin."""
    weights = published_state_dict(source)
    if any(key.startswith(JANUARY_2024_MARKERS) for key in weights):
        raise InputError("these weights come from U-Mamba's January-2024 code (transposed-conv decoder, "
                         "'ln'/'mamba' at the top level), which this backend does not implement; "
                         "use weights trained with the code of March 2024 or later")
    expected = model.state_dict()
    complete = {}
    missing = []
    for key in expected:
        twin = next((alias for alias in [key, *_aliases(key)] if alias in weights), None)
        if twin is None:
            missing.append(key)
        else:
            complete[key] = weights[twin]
    # modules a release builds but never calls (MPU-Net's decoder5/up1/map5): their weights are dropped
    ignored = tuple(getattr(model, "ignored_release_prefixes", ()))
    unexpected = [key for key in weights if key not in expected and not key.startswith(ignored) and
                  not any(a in expected for a in _aliases(key))]
    if missing or unexpected:
        raise InputError(
            f"the checkpoint does not fit {type(model).__name__}: {len(missing)} missing keys "
            f"(first: {missing[:3]}), {len(unexpected)} unexpected keys (first: {unexpected[:3]}). "
            "Check that the architecture and plans match the ones it was trained with."
        )
    wrong_shape = [f"{key} {tuple(complete[key].shape)} vs {tuple(value.shape)}"
                   for key, value in expected.items() if complete[key].shape != value.shape]
    if wrong_shape:
        raise InputError(
            f"the checkpoint's tensors do not fit {type(model).__name__}: {len(wrong_shape)} differ in shape "
            f"(first: {wrong_shape[:3]}). Build the network with the plans, input channels and classes it was trained with."
        )
    model.load_state_dict(complete, strict=True)
