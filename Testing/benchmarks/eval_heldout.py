"""Held-out metrics of model packages on synthetic studies, side by side (the numbers in model.json).

    python Testing/benchmarks/eval_heldout.py --studies HELD_OUT_DIR --models Backend/models/attumamba-synth PKG2 \\
        --out eval_out

Each study of ``attumamba-seg synth --format nifti`` output (CT.nii.gz, SUV.nii.gz, SEG.nii.gz)
is segmented on the PET grid (where autoPET's ground truth lives) and scored with
``attumamba-seg evaluate``; the table lists mean Dice, FPV, FNV, NSD and the network time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import SimpleITK as sitk

from attumamba.inference import SegmentOptions, Segmenter, open_model, run_study
from attumamba.io import load_volume
from attumamba.training.evaluate import evaluate_folders


def segment_all(package: Path, studies: list[Path], out: Path, device: str) -> dict:
    segmenter = Segmenter(open_model(package), device)
    predictions, truth = out / "pred", out / "gt"
    for folder in (predictions, truth):
        folder.mkdir(parents=True, exist_ok=True)
    seconds = []
    for study in studies:
        ct, pet = load_volume(study / "CT.nii.gz"), load_volume(study / "SUV.nii.gz")
        started = time.perf_counter()
        result = run_study(segmenter, ct, pet, SegmentOptions(reference="pet"))
        seconds.append(time.perf_counter() - started)
        sitk.WriteImage(sitk.Cast(result.instances > 0, sitk.sitkUInt8), str(predictions / f"{study.name}.nii.gz"))
        shutil.copy(study / "SEG.nii.gz", truth / f"{study.name}.nii.gz")
        print(f"  {segmenter.package.name} {study.name}: {result.report['totals']['n_lesions']} lesions, "
              f"{seconds[-1]:.1f} s", flush=True)
    _, summary, _ = evaluate_folders(predictions, truth, out / "metrics")
    mean = {name: values["mean"] for name, values in summary["metrics"].items()}
    return {"mean": mean, "cases": summary["cases"], "seconds_per_study": sum(seconds) / len(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=Path, required=True)
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    studies = sorted(p for p in args.studies.iterdir() if (p / "SEG.nii.gz").is_file())
    rows = {}
    for package in args.models:
        rows[package.name] = segment_all(package, studies, args.out / package.name, args.device)
    keys = ("dice", "fpv_ml", "fnv_ml", "nsd_2mm", "hd95_mm")
    print(f"\n{len(studies)} held-out studies ({args.studies})")
    print("| model | " + " | ".join(f"mean {k}" for k in keys) + " | s/study |")
    print("|---" * (len(keys) + 2) + "|")
    for name, row in rows.items():
        mean = row["mean"]
        print(f"| {name} | " + " | ".join(f"{mean[k]:.3f}" if mean.get(k) is not None else "-" for k in keys)
              + f" | {row['seconds_per_study']:.1f} |")
    (args.out / "heldout.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
