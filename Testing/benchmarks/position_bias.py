"""Does a model find a lesion only at the centre of its tile? Dice on 48³-style patches of
preprocessed training cases, centred on a lesion voxel and shifted off it, side by side.

    python Testing/benchmarks/position_bias.py --preprocessed nnunet/preprocessed/Dataset501_SynthPETCT \\
        --models Backend/models/attumamba-synth PKG2 [--cases 6] [--shifts 0,8,16]

A translation-robust model scores about the same at every shift: at shifts 0 / 8 / 16 voxels the
first shipped model (lesions centred in training) scored 0.60 / 0.005 / 0.007, the current one
0.65 / 0.63 / 0.65 (README, Training).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

from attumamba.inference import Segmenter, open_model


def patch_dice(network, data, seg, centre, shift, patch) -> float | None:
    lower = [int(c - p // 2 + s) for c, p, s in zip(centre, patch, shift)]
    lower = [max(0, min(lo, size - p)) for lo, size, p in zip(lower, data.shape[1:], patch)]
    window = tuple(slice(lo, lo + p) for lo, p in zip(lower, patch))
    x = torch.from_numpy(np.ascontiguousarray(data[(slice(None), *window)]))[None].float()
    if tuple(x.shape[2:]) != tuple(patch):
        return None
    with torch.no_grad():
        predicted = network(x).argmax(1)[0].numpy().astype(bool)
    truth = seg[window] == 1
    return float(2 * (predicted & truth).sum() / max(1, predicted.sum() + truth.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preprocessed", type=Path, required=True, help="nnU-Net preprocessed dataset folder")
    parser.add_argument("--models", nargs="+", required=True, help="model packages")
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--shifts", default="0,8,16")
    args = parser.parse_args()
    shifts = [int(s) for s in args.shifts.split(",")]
    print(f"| model | {' | '.join(f'Dice, shift {s}' for s in shifts)} | patches |")
    print(f"|---|{'---|' * len(shifts)}---|")
    for path in args.models:
        segmenter = Segmenter(open_model(path), "cpu")
        network, patch = segmenter.networks[0], segmenter.configuration.patch_size
        folder = args.preprocessed / segmenter.configuration.data_identifier
        dataset = infer_dataset_class(str(folder))(str(folder))
        rng = np.random.default_rng(0)
        scores: dict[int, list[float]] = {s: [] for s in shifts}
        for key in list(dataset.identifiers)[: args.cases]:
            data, seg, _, properties = dataset.load_case(key)
            data, seg, voxels = np.asarray(data), np.asarray(seg)[0], properties["class_locations"][1]
            for _ in range(3 if len(voxels) else 0):
                centre = voxels[rng.integers(len(voxels))][1:]
                for shift in shifts:
                    score = patch_dice(network, data, seg, centre, rng.choice([-1, 1], 3) * shift, patch)
                    if score is not None:
                        scores[shift].append(score)
        print(f"| {segmenter.package.name} | {' | '.join(f'{np.mean(scores[s]):.3f}' for s in shifts)} "
              f"| {len(scores[shifts[0]])} |")


if __name__ == "__main__":
    main()
