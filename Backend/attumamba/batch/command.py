"""``attumamba-seg batch``: segment every study under a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_SOME_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..inference.command import add_model_options

    parser = subparsers.add_parser(
        "batch", help="segment every study under a folder (DICOM trees and NIfTI pairs), with cohort tables",
        description="Finds every CT + PET study under STUDY_DIR and writes, per study, OUT/studies/<id>/ "
                    "(lesions.nii.gz, lesions.seg.nrrd, lesions_seg.dcm and lesions_sr.dcm for DICOM inputs, "
                    "lesions.json/csv, mip.png), "
                    "then OUT/cohort_studies.csv, OUT/cohort_lesions.csv and OUT/report.html. A study that fails is "
                    "recorded in OUT/failed/ and the run goes on; the exit code is 1 if any failed.",
    )
    parser.add_argument("study_dir", type=Path, metavar="STUDY_DIR", help="folder holding the studies")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder (empty, or one to --resume)")
    add_model_options(parser)
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished studies in OUT whose inputs are unchanged (same files, sizes and "
                             "times, or DICOM series) and do the rest; any other is redone, the reason in batch.json")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--workers", type=int, default=1, metavar="N",
                       help="local worker processes (one per GPU, or sharing the CPU cores; default 1)")
    scale.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster ('local' starts one on this machine)")
    parser.add_argument("--reference", choices=("ct", "pet"), default="ct", help="grid of the labelmaps (default ct)")
    parser.add_argument("--min-volume", type=float, default=0.0, metavar="ML", help="drop lesions below this volume")
    parser.add_argument("--min-suv-max", type=float, default=None, metavar="SUV",
                        help="drop lesions whose SUVmax is below this")
    parser.add_argument("--pairs", type=Path, metavar="PAIRS.csv",
                        help="compare pairs of studies (CSV: patient,baseline,follow_up with study ids) once they are "
                             "segmented: OUT/responses/<patient>/ and OUT/cohort_responses.csv")
    parser.set_defaults(func=run_batch_command)


def run_batch_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .runner import run_batch
    from .task import BatchSettings

    settings = BatchSettings(model=args.model, device=args.device, tta=args.tta, reference=args.reference,
                             min_volume_ml=args.min_volume, min_suv_max=args.min_suv_max)
    bar = tqdm(desc="studies", unit="study", total=0)
    running: dict[str, str] = {}

    def on_found(studies, todo) -> None:
        bar.reset(total=len(todo))

    def on_progress(study_id: str, fraction: float, stage: str) -> None:
        running[study_id] = f"{study_id}: {stage} {fraction:.0%}"
        bar.set_postfix_str(" | ".join(running.values()), refresh=True)

    def on_done(study, outcome) -> None:
        running.pop(study.study_id, None)
        result = (f"{outcome.totals.get('n_lesions', 0)} lesions, {outcome.seconds:.0f} s" if outcome.ok
                  else f"FAILED: {outcome.error}")
        bar.write(f"{study.study_id}: {result}")
        bar.update(1)

    try:
        summary = run_batch(args.study_dir, args.out, settings, resume=args.resume, workers=args.workers,
                            ray_address=args.ray, on_found=on_found, on_progress=on_progress, on_done=on_done,
                            pairs_csv=args.pairs)
    finally:
        bar.close()
    kept = f", {len(summary.already_done)} kept from before" if summary.already_done else ""
    print(f"{len(summary.done)} studies segmented, {len(summary.failed)} failed{kept}; "
          f"{summary.skipped_inputs} input items skipped (see {summary.files.get('html', args.out)})")
    for row in summary.responses:
        found = f"RECIST {row['recist']}, PERCIST {row['percist']}" if row["status"] == "done" else row["reason"]
        print(f"  response {row['patient']} ({row['baseline']} → {row['follow_up']}): {found}")
    for study_id, reason in summary.redone.items():
        print(f"  redone {study_id}: {reason}")
    for study_id, reason in summary.failed.items():
        print(f"  failed {study_id}: {reason}")
    return 0 if summary.ok else EXIT_SOME_FAILED
