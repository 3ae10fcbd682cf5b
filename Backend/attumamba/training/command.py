"""``attumamba-seg dataset``: studies -> an nnU-Net v2 raw dataset."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="convert PET/CT studies (DICOM, autoPET, synth output) into an nnU-Net v2 raw dataset",
        description="CT on the PET grid (_0000, HU) and PET (_0001, SUV) per study; lesion masks from SEG.nii.gz.",
    )
    parser.add_argument("studies", type=Path, help="folder with the studies")
    parser.add_argument("--id", type=int, required=True, help="nnU-Net dataset id (1-999)")
    parser.add_argument("--name", default="PETCTLesions", help="dataset name (default PETCTLesions)")
    parser.add_argument("--nnunet-raw", type=Path, default=None, help="nnU-Net raw folder (default: $nnUNet_raw)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
