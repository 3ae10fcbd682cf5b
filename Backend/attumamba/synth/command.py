"""``attumamba-seg synth``: synthetic whole-body PET/CT studies with lesion ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate synthetic whole-body PET/CT studies with lesion ground truth",
        description="Synthetic whole-body PET/CT studies (autoPET-style NIfTI or DICOM), deterministic for a seed.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per study)")
    parser.add_argument("--cases", type=int, default=1, help="number of studies (default 1)")
    parser.add_argument("--format", choices=("nifti", "dicom"), default="nifti")
    parser.add_argument("--tracer", choices=("psma", "fdg", "mixed"), default="mixed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first-index", type=int, default=0, help="index of the first study (to extend a series)")
    parser.add_argument(
        "--profile", choices=("full", "compact"), default="full",
        help="full: realistic grids (default); compact: coarse grids for quick tests and training",
    )
    parser.add_argument(
        "--follow-up", action="store_true",
        help="write a baseline and a follow-up study of each patient (CASE/baseline, CASE/follow_up) and the "
             "response's ground truth (CASE/response_truth.json)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..progress import progress_bar
    from .writer import synthesize

    with progress_bar("studies", total=args.cases) as progress:
        folders = synthesize(
            args.out, args.cases, fmt=args.format, tracer=args.tracer, seed=args.seed,
            profile=args.profile, first_index=args.first_index, progress=progress, follow_up=args.follow_up,
        )
    for folder in folders:
        print(folder)
    return 0
