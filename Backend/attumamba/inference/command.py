"""``attumamba-seg segment`` (one study → labelmap + lesion report) and ``attumamba-seg models``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..devices import DEVICES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment one PET/CT study: lesion labelmap, lesions.json and lesions.csv",
        description="CT and PET as DICOM series folders or NIfTI/NRRD/MHA files (PET files in SUV). "
                    "Writes OUT/lesions.nii.gz (instances 1..N by decreasing volume), lesions.json, lesions.csv, "
                    "timings.json and study.json (the inputs they were made from). The results are written beside "
                    "OUT and moved into place when complete; earlier results in OUT are replaced only if they are "
                    "of the same CT and PET, or with --overwrite.",
    )
    parser.add_argument("--ct", required=True, help="CT: DICOM series folder or volume file (HU)")
    parser.add_argument("--pet", required=True, help="PET: DICOM series folder (converted to SUVbw) or volume file in SUV")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace results in OUT that are of another study (or of unrecorded inputs); a folder "
                             "holding files segment does not write is never replaced")
    add_model_options(parser)
    parser.add_argument("--reference", choices=("ct", "pet"), default="ct", help="grid of the labelmap (default ct)")
    parser.add_argument("--min-volume", type=float, default=0.0, metavar="ML", help="drop lesions below this volume")
    parser.add_argument("--min-suv-max", type=float, default=None, metavar="SUV",
                        help="drop lesions whose SUVmax is below this")
    parser.set_defaults(func=run_segment)

    models = subparsers.add_parser("models", help="list the installed models",
                                   description="Shipped models and those in the folders of $ATTUMAMBA_MODELS.")
    models.add_argument("--json", action="store_true", help="print the manifests as JSON")
    models.set_defaults(func=run_models)

    package = subparsers.add_parser(
        "package", help="turn a trained nnU-Net results folder into a model package",
        description="Copies plans.json and dataset.json, strips each fold's checkpoint_final.pth to its weights "
                    "(so it loads with weights_only=True) and writes model.json.")
    package.add_argument("results", type=Path, help="nnU-Net results folder <Trainer>__<Plans>__<configuration>")
    package.add_argument("-o", "--out", type=Path, required=True, help="new package folder")
    package.add_argument("--name", required=True, help="short model name (what --model and /v1/models use)")
    package.add_argument("--display-name", default=None)
    package.add_argument("--description", default="")
    package.add_argument("--folds", default=None, help="comma-separated folds (default: every finished fold)")
    package.add_argument("--metrics", type=Path, default=None, help="summary.json from 'attumamba-seg evaluate'")
    package.add_argument("--training", type=Path, default=None, help="JSON with how it was trained (data, commands)")
    package.add_argument("--license", default="unspecified")
    package.add_argument("--default", action="store_true", help="mark it as the model used when none is named")
    package.set_defaults(func=run_package)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="installed model name or package folder/zip (default: the default model)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto (CUDA if present), cpu or cuda")
    parser.add_argument("--tta", action="store_true", help="average over mirrored inputs (8x slower in 3D)")


def run_segment(args: argparse.Namespace) -> int:
    from ..progress import progress_bar
    from .package import resolve_model
    from .pipeline import SegmentOptions, load_study, run_study
    from .segment_output import check_output_folder, publish_results, segment_inputs
    from .segmenter import Segmenter

    inputs = segment_inputs(args.ct, args.pet)
    check_output_folder(args.out, inputs, args.overwrite)  # before minutes of work, not after
    started = time.perf_counter()
    segmenter = Segmenter(resolve_model(args.model), args.device, tta=args.tta)
    ct, pet = load_study(args.ct, args.pet)
    loading = time.perf_counter() - started
    options = SegmentOptions(reference=args.reference, min_volume_ml=args.min_volume, min_suv_max=args.min_suv_max)
    with progress_bar(f"segment ({segmenter.package.name}, {segmenter.device.type})") as progress:
        result = run_study(segmenter, ct, pet, options, progress=progress)
    result.timings = {"loading": loading, **result.timings}
    written = publish_results(result, args.out, inputs, args.overwrite)
    print_lesion_table(result.report)
    print(f"\n{result.report['totals']['n_lesions']} lesions, MTV {result.report['totals']['mtv_ml']:.1f} mL; "
          f"wrote {written['labelmap']}, {written['json'].name}, {written['csv'].name} "
          f"({sum(result.timings.values()):.1f} s)")
    return 0


def print_lesion_table(report: dict, limit: int = 20) -> None:
    header = f"{'id':>3} {'mL':>8} {'SUVmax':>7} {'SUVpeak':>7} {'TLG':>8} {'long mm':>8} {'short mm':>8}  measurable"
    print(header)
    for lesion in report["lesions"][:limit]:
        number = lambda key: "-" if lesion[key] is None else f"{lesion[key]:.2f}"  # noqa: E731
        recist = lesion["recist"]
        print(f"{lesion['id']:>3} {lesion['volume_ml']:>8.2f} {number('suv_max'):>7} {number('suv_peak'):>7} "
              f"{number('tlg'):>8} {recist['long_axis_mm']:>8.1f} {recist['short_axis_mm']:>8.1f}  "
              f"{'yes' if recist['measurable'] else 'no'}")
    if len(report["lesions"]) > limit:
        print(f"... and {len(report['lesions']) - limit} more (see lesions.csv)")


def run_models(args: argparse.Namespace) -> int:
    from .package import list_models, model_folders

    models = [m.summary() for m in list_models()]
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print(f"no models installed (looked in {', '.join(map(str, model_folders()))})")
    for model in models:
        if model["broken"]:
            print(f"{model['name']}: BROKEN, cannot be used ({model['path']})\n    {model['reason']}")
            continue
        metrics = model.get("metrics") or {}
        shown = ", ".join(f"{k} {v:.3g}" for k, v in metrics.items() if isinstance(v, (int, float)))
        print(f"{model['name']}: {model['display_name']} ({model['architecture']}, {model['configuration']}, "
              f"folds {', '.join(model['folds'])})" + (f"\n    held-out: {shown}" if shown else ""))
    return 0


def run_package(args: argparse.Namespace) -> int:
    from .package import build_manifest, export_package

    folds = sorted(args.results.glob("fold_*/checkpoint_final.pth"))
    if args.folds:
        wanted = {f"fold_{fold.strip()}" for fold in args.folds.split(",")}
        folds = [f for f in folds if f.parent.name in wanted]
    folds = [f.parent for f in folds]
    if not folds:
        from ..errors import InputError

        raise InputError(f"{args.results} has no finished fold (fold_*/checkpoint_final.pth) to package")
    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    if "metrics" in metrics:  # summary.json of 'attumamba-seg evaluate': keep each metric's mean
        metrics = {name: values["mean"] for name, values in metrics["metrics"].items()}
    training = json.loads(args.training.read_text()) if args.training else {}
    manifest = build_manifest(args.results, name=args.name, display_name=args.display_name or args.name,
                              description=args.description, license=args.license, training=training,
                              metrics=metrics.get("mean", metrics))
    manifest["default"] = args.default
    package = export_package(folds, args.out, manifest)
    size = sum(p.stat().st_size for p in package.root.rglob("*") if p.is_file())
    print(f"packaged {package.name} ({', '.join(f.name for f in folds)}) in {package.root}, {size / 1e6:.1f} MB")
    return 0
