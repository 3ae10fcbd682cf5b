"""From an nnU-Net v2 plan to our networks: U-Mamba's plan-derived rules and the plans entry per model.

nnU-Net builds a network from ``configurations[c]["architecture"]`` (class path, ``arch_kwargs``,
the kwargs to import) and derives the deep-supervision scales from ``arch_kwargs["strides"]``.
``plans_with_network`` rewrites one configuration of a plans dict so that the unmodified
nnU-Net trainer and predictor build the chosen model, get as many deep-supervision targets as
it has outputs, and use a patch its topology can divide.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

from ..errors import InputError
from .blocks import _tuple
from .registry import network_spec


def apply_block_count_rule(n_blocks: list[int], n_blocks_decoder: list[int], n_stages: int) -> tuple[list[int], list[int]]:
    """U-Mamba's override: the lower half of the encoder and the two-ish highest decoder stages get one block."""
    n_blocks, n_blocks_decoder = list(n_blocks), list(n_blocks_decoder)
    for s in range(math.ceil(n_stages / 2), n_stages):
        n_blocks[s] = 1
    for s in range(math.ceil((n_stages - 1) / 2 + 0.5), n_stages - 1):
        n_blocks_decoder[s] = 1
    return n_blocks, n_blocks_decoder


def feature_sizes(input_size: Sequence[int], strides: Sequence) -> list[list[int]]:
    """Feature-map size after each stage for a patch of ``input_size`` (integer division, as U-Mamba)."""
    size, sizes = list(input_size), []
    for stride in strides:
        stride = _tuple(stride, len(size))
        size = [n // s for n, s in zip(size, stride)]
        sizes.append(size)
    return sizes


def channel_token_stages(input_size: Sequence[int], strides: Sequence, features: Sequence[int]) -> list[bool]:
    """U-Mamba Enc's token mode per stage: tokenise channels where a stage has no more voxels than channels."""
    return [math.prod(size) <= channels for size, channels in zip(feature_sizes(input_size, strides), features)]


def resolved_configuration(plans: dict, name: str) -> dict:
    """A configuration with its ``inherits_from`` chain merged in (as nnU-Net's PlansManager does)."""
    configurations = plans.get("configurations", {})
    if name not in configurations:
        raise InputError(f"the plans have no configuration {name!r}; they have: {', '.join(configurations) or 'none'}")
    own = configurations[name]
    if "inherits_from" not in own:
        return copy.deepcopy(own)
    merged = resolved_configuration(plans, own["inherits_from"])
    merged.update(copy.deepcopy({k: v for k, v in own.items() if k != "inherits_from"}))
    return merged


def architecture_entry(model: str, configuration: dict) -> dict:
    """The ``architecture`` entry that makes nnU-Net build ``model`` for this (resolved) configuration."""
    spec = network_spec(model)
    if "architecture" not in configuration:
        raise InputError("the plans use nnU-Net's old format (no 'architecture' entry); "
                         "plan the dataset again with the installed nnU-Net v2 (nnUNetv2_plan_experiment)")
    patch = configuration["patch_size"]
    if len(patch) not in spec.dims:
        wanted = " or ".join(f"{d}D" for d in spec.dims)
        raise InputError(f"model {model!r} is {wanted} and this configuration has {len(patch)}D patches; "
                         f"use the {spec.configuration!r} configuration")
    architecture = configuration["architecture"]
    kwargs = spec.arch_kwargs(architecture["arch_kwargs"], patch)
    to_import = [key for key in architecture.get("_kw_requires_import", ["conv_op"]) if key in kwargs]
    return {"network_class_name": spec.class_path, "arch_kwargs": kwargs, "_kw_requires_import": to_import}


def with_fewer_stages(configuration: dict, features: Sequence[int]) -> None:
    """Give a plan-topology configuration these stage widths, dropping its deepest stages if fewer."""
    kwargs = configuration["architecture"]["arch_kwargs"]
    n = len(features)
    if not 2 <= n <= kwargs["n_stages"]:
        raise InputError(f"give 2 to {kwargs['n_stages']} stage widths for this plan (it has {kwargs['n_stages']} stages), "
                         f"not {n}")
    kwargs["n_stages"], kwargs["features_per_stage"] = n, [int(f) for f in features]
    for key in ("kernel_sizes", "strides", "n_conv_per_stage", "n_blocks_per_stage"):
        if key in kwargs:
            kwargs[key] = kwargs[key][:n]
    for key in ("n_conv_per_stage_decoder",):
        if key in kwargs:
            kwargs[key] = kwargs[key][: n - 1]


def plans_with_network(plans: dict, model: str, configuration: str | None = None, *, features: Sequence[int] | None = None,
                       patch_size: Sequence[int] | None = None, batch_size: int | None = None) -> dict:
    """A copy of ``plans`` whose configuration (default: the model's) builds ``model``.

    ``features`` (stage widths; fewer than planned drops the deepest stages), ``patch_size`` and
    ``batch_size`` shrink a plan for small hardware. The configuration is stored resolved (no
    ``inherits_from``), its patch is rounded up to a multiple of the model's total stride per
    axis where needed, and its architecture entry is replaced; other configurations are kept.
    """
    spec = network_spec(model)
    name = configuration or spec.configuration
    resolved = resolved_configuration(plans, name)
    if patch_size is not None:
        if len(patch_size) != len(resolved["patch_size"]):
            raise InputError(f"the {name} patch has {len(resolved['patch_size'])} axes; got {list(patch_size)}")
        resolved["patch_size"] = [int(p) for p in patch_size]
    if batch_size is not None:
        resolved["batch_size"] = int(batch_size)
    if features is not None:
        if spec.own_strides is not None:
            raise InputError(f"{model} has a fixed topology of its own; stage widths cannot be set from the plans")
        with_fewer_stages(resolved, features)
    if "architecture" in resolved:
        multiple = spec.patch_multiple(resolved["architecture"]["arch_kwargs"]["strides"])
        resolved["patch_size"] = [math.ceil(p / m) * m for p, m in zip(resolved["patch_size"], multiple)]
    resolved["architecture"] = architecture_entry(model, resolved)
    updated = copy.deepcopy(plans)
    updated["configurations"][name] = resolved
    return updated
