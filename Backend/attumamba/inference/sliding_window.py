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
                   should_cancel: Callable[[], bool] | None = None, skip_empty: bool = False,
                   tile_batch: int = 2) -> torch.Tensor:
    """Averaged logits ``(num_classes, *data.shape[1:])`` of ``networks`` over ``data`` ``(C, Z, Y, X)``.

    ``patch_size`` has 3 entries, or 2 for a slice-wise network; ``mirror_axes`` are spatial
    axes of the patch (0 = first patch axis) to average flips over. Tiles go through the network
    ``tile_batch`` at a time: on the CPU a batch of one falls back to PyTorch's unoptimised 3D
    convolution (about 8x slower than oneDNN's), so even the last, lone tile runs in a pair.
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
    windows = [(slice(None), *(slice(o, o + t) for o, t in zip(origin, tile))) for origin in origins]
    pending: list[tuple] = []
    for done, window in enumerate(windows, start=1):
        if should_cancel is not None and should_cancel():
            raise CancelledError("segmentation cancelled")
        if not (skip_empty and bool((source[window] <= floor).all())):
            pending.append(window)
        if len(pending) == tile_batch or (done == len(windows) and pending):
            batch = torch.stack([source[w] for w in pending]).to(device, torch.float32)
            predictions = _predict_batch(networks, batch[:, :, 0] if slice_wise else batch, variants, num_classes)
            if slice_wise:
                predictions = predictions[:, :, None]
            for w, prediction in zip(pending, predictions.cpu()):
                logits[w] += prediction * gaussian
                weights[w[1:]] += gaussian
            pending = []
        if on_tile is not None:
            on_tile(done, len(windows))
    covered = weights > 0
    logits[:, covered] /= weights[covered]
    logits[0, ~covered] = BACKGROUND_LOGIT  # only skipped tiles here: background
    return logits[(slice(None), *unpad[1:])]


def _predict_batch(networks, batch: torch.Tensor, variants, num_classes: int) -> torch.Tensor:
    """Mean logits of every network and mirror variant for a batch of tiles (a lone tile is doubled)."""
    lone = batch.shape[0] == 1
    x = batch.repeat(2, *[1] * (batch.dim() - 1)) if lone else batch
    prediction = torch.zeros((x.shape[0], num_classes, *x.shape[2:]), dtype=torch.float32, device=x.device)
    for flip in variants:
        for network in networks:
            out = network(torch.flip(x, flip) if flip else x).float()
            prediction += torch.flip(out, flip) if flip else out
    prediction /= len(variants) * len(networks)
    return prediction[:1] if lone else prediction
