"""``attumamba-seg demo``: the built-in default job, end to end on a synthetic study.

It makes one synthetic whole-body PET/CT study as a DICOM study (as a scanner would deliver
it), finds it again with :func:`attumamba.io.find_studies`, reads CT and PET back through
:func:`attumamba.io.load_volume` (PET converted to SUVbw from its DICOM headers), and prints
what it found next to the generator's ground truth, with a coronal PET/CT MIP as a PNG.
Segmentation joins this job when the model lands; the command name stays.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


from .errors import InputError

MARKER = ".attumamba-demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the default job on a built-in synthetic study",
        description="Synthetic DICOM PET/CT study -> discovery -> SUV read-back -> summary and MIP figure.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic study (default: 7)")
    parser.add_argument("--tracer", choices=("psma", "fdg"), default="psma")
    parser.set_defaults(func=run)


def _prepare_output(out: Path) -> None:
    """Reuse a previous demo folder; refuse any other non-empty folder (never delete user data)."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise InputError(
                f"{out} exists and is not a previous demo output; choose another --out or empty it first."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by attumamba-seg demo; safe to delete\n")


def run(args: argparse.Namespace) -> int:
    import SimpleITK as sitk
    from tqdm import tqdm

    from . import io, synth
    from .viz import render_pet_ct_mip

    out: Path = args.out
    _prepare_output(out)

    with tqdm(total=1.0, desc="synthetic study", unit="", bar_format="{l_bar}{bar}| {postfix}") as bar:

        def progress(fraction: float, stage: str) -> None:
            bar.n = round(fraction, 3)
            bar.set_postfix_str(stage)
            bar.refresh()

        (study_dir,) = synth.synthesize(
            out / "studies", 1, fmt="dicom", tracer=args.tracer, seed=args.seed, progress=progress
        )

    scan = io.find_studies(out / "studies")
    print(f"\nStudies found under {out / 'studies'}: {len(scan.studies)}")
    for skipped in scan.skipped:
        print(f"  skipped {skipped.path.relative_to(out)}: {skipped.reason}")
    if not scan.studies:
        raise InputError("the synthetic study was not found again; see the skipped files above")
    study = scan.studies[0]
    ct = study.load_ct()
    suv = study.load_pet()

    print(f"  {study.study_id}: CT {_describe(ct)}")
    print(f"  {' ' * len(study.study_id)}  PET {_describe(suv)}")
    suv_array = sitk.GetArrayViewFromImage(suv)
    print(f"  PET in SUVbw: max {suv_array.max():.1f}, mean in body {suv_array[suv_array > 0.2].mean():.2f}")

    truth_dir = study_dir / "truth"
    truth = json.loads((truth_dir / "ground_truth.json").read_text())
    lesions = truth["lesions"]
    print(f"\nGround-truth lesions ({truth['tracer'].upper()}, {len(lesions)}):")
    print(f"  {'id':>3} {'type':<7} {'shape':<10} {'volume mL':>9} {'true SUV':>8} {'SUVmax read':>11}")
    labels_pet = sitk.ReadImage(str(truth_dir / "SEG_instances.nii.gz"))
    label_array = sitk.GetArrayViewFromImage(labels_pet)
    for lesion in lesions:
        inside = suv_array[label_array == lesion["id"]]
        read_max = f"{inside.max():.1f}" if inside.size else "-"
        print(
            f"  {lesion['id']:>3} {lesion['type']:<7} {lesion['shape']:<10} "
            f"{lesion['volume_ml']:>9.2f} {lesion['suv']:>8.1f} {read_max:>11}"
        )
    figure = render_pet_ct_mip(
        ct, suv, out / "mip.png", labels=labels_pet,
        title=f"{study.study_id}: coronal PET MIP over CT, ground-truth lesions",
    )
    print(f"\nFigure: {figure}")
    return 0


def _describe(image) -> str:
    size = "x".join(str(n) for n in image.GetSize())
    spacing = "x".join(f"{s:.2f}" for s in image.GetSpacing())
    origin = ", ".join(f"{o:.1f}" for o in image.GetOrigin())
    return f"{size} voxels of {spacing} mm, origin ({origin}) mm"


__all__ = ["register", "run"]
