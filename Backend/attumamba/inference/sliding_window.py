"""Sliding-window prediction with Gaussian tile weighting and optional mirror test-time augmentation.

nnU-Net's own predictor does the same but offers no hook between tiles; ours reports progress
and honours a cancel request after every tile, and keeps the accumulators in fp32 on the CPU
so a whole-body volume never has to fit on the GPU. Tile placement and the Gaussian are
nnU-Net's (``compute_steps_for_sliding_window``, ``compute_gaussian``), so predictions match.
A 2D configuration runs the same loop with one-slice tiles.

``skip_empty`` leaves out tiles in which every channel sits at its volume-wide minimum (air
around the patient after nnU-Net's clipping): a whole-body field is largely such tiles. Voxels
that only skipped tiles cover are background; the others average the tiles that ran.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from acvl_utils.cropping_and_padding.padding import pad_nd_image
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

from ..errors import CancelledError

TileProgress = Callable[[int, int], None]  # (tiles done, tiles in total)
BACKGROUND_LOGIT = 20.0


def tile_origins(shape: Sequence[int], tile: Sequence[int], step: float) -> list[tuple[int, ...]]:
    """Tile corners covering ``shape`` (each axis at least as long as the tile), nnU-Net's placement."""
    return list(itertools.product(*compute_steps_for_sliding_window(tuple(shape), tuple(tile), step)))


def mirror_variants(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of the spatial mirror axes (the empty one first): 8 passes for 3 axes."""
    return [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]


@torch.inference_mode()
def predict_logits(networks: Sequence[torch.nn.Module], data: np.ndarray, patch_size: Sequence[int], *,
                   num_classes: int, mirror_axes: Sequence[int] = (), step: float = 0.5,
                   device: torch.device = torch.device("cpu"), on_tile: TileProgress | None = None,
                   should_cancel: Callable[[], bool] | None = None, skip_empty: bool = False) -> torch.Tensor:
    """Averaged logits ``(num_classes, *data.shape[1:])`` of ``networks`` over ``data`` ``(C, Z, Y, X)``.

    ``patch_size`` has 3 entries, or 2 for a slice-wise network; ``mirror_axes`` are spatial
    axes of the patch (0 = first patch axis) to average flips over.
    """
    slice_wise = len(patch_size) == 2
    tile = (1, *patch_size) if slice_wise else tuple(patch_size)
    padded, unpad = pad_nd_image(data, tile, "constant", {"constant_values": 0}, True)
    spatial = padded.shape[1:]
    gaussian = compute_gaussian(tile, sigma_scale=1.0 / 8, value_scaling_factor=10, dtype=torch.float32,
                                device=torch.device("cpu"))
    logits = torch.zeros((num_classes, *spatial), dtype=torch.float32)
    weights = torch.zeros(spatial, dtype=torch.float32)
    origins = tile_origins(spatial, tile, step)
    variants = mirror_variants([a + 2 for a in mirror_axes])  # after the batch and channel axes
    source = torch.from_numpy(np.ascontiguousarray(padded))
    floor = source.flatten(1).min(1).values.view(-1, *[1] * len(spatial)) if skip_empty else None
    for done, origin in enumerate(origins):
        if should_cancel is not None and should_cancel():
            raise CancelledError("segmentation cancelled")
        window = (slice(None), *(slice(o, o + t) for o, t in zip(origin, tile)))
        if skip_empty and bool((source[window] <= floor).all()):
            if on_tile is not None:
                on_tile(done + 1, len(origins))
            continue
        x = source[window][None].to(device, torch.float32)
        if slice_wise:
            x = x[:, :, 0]
        prediction = torch.zeros((1, num_classes, *x.shape[2:]), dtype=torch.float32, device=device)
        for flip in variants:
            for network in networks:
                out = network(torch.flip(x, flip) if flip else x)
                prediction += torch.flip(out, flip).float() if flip else out.float()
        prediction /= len(variants) * len(networks)
        if slice_wise:
            prediction = prediction[:, :, None]
        logits[window] += prediction[0].cpu() * gaussian
        weights[window[1:]] += gaussian
        if on_tile is not None:
            on_tile(done + 1, len(origins))
    covered = weights > 0
    logits[:, covered] /= weights[covered]
    logits[0, ~covered] = BACKGROUND_LOGIT  # only skipped tiles here: background
    return logits[(slice(None), *unpad[1:])]
