"""Held-out metrics of model packages on synthetic studies, side by side (the numbers in model.json).

    python Testing/benchmarks/eval_heldout.py --studies HELD_OUT_DIR --models Backend/models/attumamba-synth PKG2 \\
        --out eval_out

Each study of ``attumamba-seg synth --format nifti`` output (CT.nii.gz, SUV.nii.gz, SEG.nii.gz)
is segmented on the PET grid (where autoPET's ground truth lives) and scored with
``attumamba-seg evaluate``; the table lists mean Dice, FPV, FNV, NSD, HD95, the lesions found,
falsely found and missed (summed; autoPET V's rule) with precision, recall and F1 from those sums,
and the network time: for all studies, then per tracer (from each study's ground_truth.json).
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
from attumamba.training.case_tracers import read_study_tracers
from attumamba.training.evaluate import evaluate_folders

MEANS = ("dice", "fpv_ml", "fnv_ml", "nsd_2mm", "hd95_mm")
LESIONS = ("tp", "fp", "fn", "precision", "recall", "f1")


def segment_all(package: Path, studies: list[Path], out: Path, device: str, tracers: dict[str, str]) -> dict:
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
    _, summary, _ = evaluate_folders(predictions, truth, out / "metrics", tracers=tracers)

    def scores(part: dict) -> dict:
        return {"mean": {name: values["mean"] for name, values in part["metrics"].items()},
                "lesions": part["lesions"], "cases": part["cases"]}

    return {**scores(summary), "by_tracer": {name: scores(part) for name, part in summary["by_tracer"].items()},
            "seconds_per_study": sum(seconds) / len(seconds)}


def table_row(name: str, scores: dict, seconds: str) -> str:
    mean, lesions = scores["mean"], scores["lesions"]
    cells = [f"{mean[k]:.3f}" if mean.get(k) is not None else "-" for k in MEANS]
    cells += [str(lesions[k]) if k in ("tp", "fp", "fn") else ("-" if lesions[k] is None else f"{lesions[k]:.3f}")
              for k in LESIONS]
    return f"| {name} | {scores['cases']} | " + " | ".join(cells) + f" | {seconds} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=Path, required=True)
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    studies = sorted(p for p in args.studies.iterdir() if (p / "SEG.nii.gz").is_file())
    tracers = read_study_tracers(args.studies)
    rows = {}
    for package in args.models:
        rows[package.name] = segment_all(package, studies, args.out / package.name, args.device, tracers)
    print(f"\n{len(studies)} held-out studies ({args.studies}); lesions summed over the studies")
    print("| model | studies | " + " | ".join(f"mean {k}" for k in MEANS) + " | "
          + " | ".join(f"lesion {k}" for k in LESIONS) + " | s/study |")
    print("|---" * (len(MEANS) + len(LESIONS) + 3) + "|")
    for name, row in rows.items():
        print(table_row(name, row, f"{row['seconds_per_study']:.1f}"))
        for tracer, part in row["by_tracer"].items():
            print(table_row(f"{name} ({tracer})", part, ""))
    (args.out / "heldout.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
