"""``attumamba-seg demo``: the built-in default job, end to end on a synthetic study.

It makes one synthetic whole-body PET/CT study as a DICOM study (as a scanner would deliver
it), finds it again with :func:`attumamba.io.find_studies`, reads CT and PET back through
:func:`attumamba.io.load_volume` (PET converted to SUVbw from its DICOM headers), segments it
with the default model, and prints the lesion table next to the generator's ground truth and
the case's metrics, with a coronal PET/CT MIP of the found lesions as a PNG.
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
        description="Synthetic DICOM PET/CT study -> discovery -> SUV read-back -> segmentation with the "
                    "default model -> lesion table, metrics against the ground truth, MIP figure.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic study (default: 7)")
    parser.add_argument("--tracer", choices=("psma", "fdg"), default="psma")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs")
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

    from . import io, synth
    from .inference import Segmenter, resolve_model, run_study, write_outputs
    from .inference.command import print_lesion_table
    from .metrics import evaluate_case
    from .progress import progress_bar
    from .viz import render_pet_ct_mip

    out: Path = args.out
    _prepare_output(out)

    with progress_bar("synthetic study") as progress:
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
    print(f"\nSegmenting with the default model ({args.device}):")
    with progress_bar("segment") as progress:
        segmenter = Segmenter(resolve_model(None), args.device)
        result = run_study(segmenter, ct, suv, progress=progress)
    written = write_outputs(result, out / "segmentation")
    print_lesion_table(result.report)
    truth_ct = sitk.GetArrayFromImage(sitk.ReadImage(str(truth_dir / "SEG_instances_ct.nii.gz"))) > 0
    found = sitk.GetArrayFromImage(result.instances) > 0
    scores = evaluate_case(found, truth_ct, ct.GetSpacing()[::-1])
    print(f"\nAgainst the ground truth (CT grid): Dice {scores['dice']:.3f}, FPV {scores['fpv_ml']:.2f} mL, "
          f"FNV {scores['fnv_ml']:.2f} mL; {result.report['totals']['n_lesions']} lesions found, {len(lesions)} true")
    print("Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    figure = render_pet_ct_mip(
        ct, suv, out / "mip.png", labels=result.instances,
        title=f"{study.study_id}: coronal PET MIP over CT, lesions found by {segmenter.package.name}",
    )
    print(f"\nOutputs: {written['labelmap'].parent} (labelmap, lesions.json, lesions.csv); figure: {figure}")
    return 0


def _describe(image) -> str:
    size = "x".join(str(n) for n in image.GetSize())
    spacing = "x".join(f"{s:.2f}" for s in image.GetSpacing())
    origin = ", ".join(f"{o:.1f}" for o in image.GetOrigin())
    return f"{size} voxels of {spacing} mm, origin ({origin}) mm"


__all__ = ["register", "run"]
