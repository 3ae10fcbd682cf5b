"""``attumamba-seg dataset`` (studies -> nnU-Net v2 raw dataset), ``train`` and ``evaluate``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    register_dataset(subparsers)
    register_train(subparsers)
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
    from ..errors import InputError
    from ..progress import progress_bar
    from .dataset import convert_studies

    raw = args.nnunet_raw or (Path(os.environ["nnUNet_raw"]) if os.environ.get("nnUNet_raw") else None)
    if raw is None:
        raise InputError("say where nnU-Net's raw datasets live: --nnunet-raw DIR, or set nnUNet_raw")
    with progress_bar("dataset") as progress:
        report = convert_studies(args.studies, raw, args.id, args.name, progress=progress)
    print(report.summary())
    return 0


def register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="segmentation metrics per case and summary (Dice, NSD, HD95, ASSD, FPV/FNV, lesion F1, ...)",
        description="Pairs masks by file name; writes per_case.csv/json and summary.json, with the lesions "
        "found and missed (autoPET V's rule) over all cases and per tracer.",
    )
    parser.add_argument("--pred", type=Path, required=True, help="folder of predicted masks")
    parser.add_argument("--gt", type=Path, required=True, help="folder of ground-truth masks")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--tolerance", type=float, default=2.0, help="NSD tolerance in mm (default 2)")
    parser.add_argument("--tracers", type=Path, metavar="CSV_OR_DIR", help="each case's tracer: a CSV with the "
                        "columns case,tracer, or the folder of studies (their ground_truth.json, as synth writes)")
    parser.add_argument("--tracer", help="the tracer of every case the --tracers table does not name (e.g. psma); "
                        "default: psma or fdg when the case name holds it")
    parser.set_defaults(func=run_evaluate)


def _print_scores(title: str, summary: dict, names: tuple[str, ...]) -> None:
    print(f"{title} ({summary['cases']} cases)")
    for name in names:
        stats = summary["metrics"][name]
        mean = "n/a" if stats["mean"] is None else f"{stats['mean']:.4f}"
        print(f"{name:>12}: mean {mean} over {stats['n']} cases")
    lesions = summary["lesions"]
    scores = ", ".join(f"{k} {'n/a' if lesions[k] is None else f'{lesions[k]:.3f}'}"
                       for k in ("precision", "recall", "f1"))
    print(f"{'lesions':>12}: {lesions['tp']} found, {lesions['fp']} false positive, {lesions['fn']} missed; {scores}")


def run_evaluate(args: argparse.Namespace) -> int:
    from .case_tracers import read_tracers
    from .evaluate import evaluate_folders

    table = read_tracers(args.tracers) if args.tracers else None
    rows, summary, missing = evaluate_folders(args.pred, args.gt, args.out, tolerance_mm=args.tolerance,
                                              tracers=table, tracer=args.tracer)
    names = ("dice", f"nsd_{args.tolerance:g}mm", "hd95_mm", "fpv_ml", "fnv_ml")
    _print_scores("all", summary, names)
    for tracer, part in summary["by_tracer"].items():
        _print_scores(tracer, part, names)
    if missing:
        print(f"no prediction for {len(missing)} cases: {', '.join(missing)}")
    print(f"written to {args.out}")
    return 1 if missing else 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


def register_train(subparsers: argparse._SubParsersAction) -> None:
    from ..nets import NETWORKS

    parser = subparsers.add_parser(
        "train",
        help="train a model on an nnU-Net v2 dataset (plans, preprocessing and training by nnunetv2)",
        description="Runs nnU-Net's fingerprint, planning and preprocessing when missing, writes plans that "
        "name the chosen network, and trains with the paper's recipe. Running the same command again "
        "resumes from the last finished epoch.",
    )
    parser.add_argument("--dataset", required=True, help="nnU-Net dataset id or DatasetNNN_Name")
    parser.add_argument("--model", default="attumamba", choices=list(NETWORKS), help="network (default attumamba)")
    parser.add_argument("--configuration", choices=["3d_fullres", "2d"], help="default: the model's own")
    parser.add_argument("--fold", default="0", help="0-4 or all (default 0)")
    parser.add_argument("--epochs", type=int, help="default: the paper's budget")
    parser.add_argument("--iterations", type=int, help="training iterations per epoch (default: the paper's)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--trainer", help="nnU-Net trainer class (default: the model's recipe)")
    parser.add_argument("--features", type=_int_list, help="stage widths, e.g. 16,32,64,128 (fewer stages than planned "
                        "drops the deepest)")
    parser.add_argument("--patch", type=_int_list, help="patch size, e.g. 48x96x96")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--plans-name", help="name of the plans (default nnUNetPlans_<model>)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--no-validation", action="store_true", help="skip nnU-Net's validation of the fold")
    parser.add_argument("--init-from", metavar="MODEL", help="start from the weights of a model package (installed "
                        "name, folder or zip), e.g. to fine-tune the default model on your own studies")
    parser.add_argument("--nnunet-dir", type=Path, help="sets nnUNet_raw/preprocessed/results to DIR/raw, ... if unset")
    parser.set_defaults(func=run_train)


def set_nnunet_folders(base: Path | None) -> None:
    if base is not None:
        for name, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"), ("nnUNet_results", "results")):
            os.environ.setdefault(name, str(base / sub))


def run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .train import TrainRequest, train

    set_nnunet_folders(args.nnunet_dir)
    request = TrainRequest(dataset=args.dataset, model=args.model, configuration=args.configuration, fold=args.fold,
                           epochs=args.epochs, iterations=args.iterations, device=args.device, trainer=args.trainer,
                           features=args.features, patch_size=args.patch, batch_size=args.batch_size,
                           plans_name=args.plans_name, processes=args.processes, validate=not args.no_validation,
                           init_from=args.init_from)
    bar = tqdm(desc="epochs", unit="epoch")

    def on_epoch(done: int, total: int, metrics: dict) -> None:
        bar.total, bar.n = total, done
        bar.set_postfix(loss=f"{metrics['train_loss']:.3f}", dice=f"{metrics['pseudo_dice']:.3f}", refresh=True)

    try:
        result = train(request, on_epoch=on_epoch)
    finally:
        bar.close()
    if result.already_done:
        print(f"already trained: {result.fold_folder / 'checkpoint_final.pth'}")
    else:
        print(f"trained epochs {result.resumed_from_epoch + 1}-{result.epochs}; checkpoints in {result.fold_folder}")
    return 0
