"""``attumamba-seg dataset`` (studies -> nnU-Net v2 raw dataset) and ``evaluate`` (metrics)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    register_dataset(subparsers)
    register_evaluate(subparsers)


def register_dataset(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="convert PET/CT studies (DICOM, autoPET, synth output) into an nnU-Net v2 raw dataset",
        description="CT on the PET grid (_0000, HU) and PET (_0001, SUV) per study; lesion masks from SEG.nii.gz.",
    )
    parser.add_argument("studies", type=Path, help="folder with the studies")
    parser.add_argument("--id", type=int, required=True, help="nnU-Net dataset id (1-999)")
    parser.add_argument("--name", default="PETCTLesions", help="dataset name (default PETCTLesions)")
    parser.add_argument("--nnunet-raw", type=Path, default=None, help="nnU-Net raw folder (default: $nnUNet_raw)")
    parser.set_defaults(func=run_dataset)


def run_dataset(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import InputError
    from .dataset import convert_studies

    raw = args.nnunet_raw or (Path(os.environ["nnUNet_raw"]) if os.environ.get("nnUNet_raw") else None)
    if raw is None:
        raise InputError("say where nnU-Net's raw datasets live: --nnunet-raw DIR, or set nnUNet_raw")
    with tqdm(total=1.0, desc="dataset", bar_format="{l_bar}{bar}| {postfix}") as bar:

        def progress(fraction: float, stage: str) -> None:
            bar.n = round(fraction, 3)
            bar.set_postfix_str(stage, refresh=True)

        report = convert_studies(args.studies, raw, args.id, args.name, progress=progress)
    print(report.summary())
    return 0


def register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="segmentation metrics per case and summary (Dice, NSD, HD95, ASSD, FPV/FNV, ...)",
        description="Pairs masks by file name; writes per_case.csv/json and summary.json.",
    )
    parser.add_argument("--pred", type=Path, required=True, help="folder of predicted masks")
    parser.add_argument("--gt", type=Path, required=True, help="folder of ground-truth masks")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in mm (default 2)")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_folders

    rows, summary, missing = evaluate_folders(args.pred, args.gt, args.out, tolerance_mm=args.tolerance)
    for name in ("dice", f"nsd_{args.tolerance:g}mm", "hd95_mm", "fpv_ml", "fnv_ml"):
        stats = summary["metrics"][name]
        mean = "n/a" if stats["mean"] is None else f"{stats['mean']:.4f}"
        print(f"{name:>12}: mean {mean} over {stats['n']} cases")
    if missing:
        print(f"no prediction for {len(missing)} cases: {', '.join(missing)}")
    print(f"written to {args.out}")
    return 1 if missing else 0
