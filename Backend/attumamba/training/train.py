"""Train one of our networks with the unmodified nnU-Net v2 pipeline.

fingerprint → default plans (nnU-Net's planner) → our plans (``plans_with_network``: the
network class named in the plans, optionally a smaller patch/width for small hardware) →
preprocessing → nnU-Net's training loop with our trainer, resumed from the last epoch when
the same command is run again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..devices import resolve_device
from ..errors import InputError
from ..nets import network_spec, plans_with_network

EXTERNAL_TRAINERS = Path(__file__).parent / "nnunet_ext"


@dataclass
class TrainRequest:
    dataset: str                          # nnU-Net id ("7") or name ("Dataset007_PETCT")
    model: str = "attumamba"
    configuration: str | None = None      # default: the model's (3d_fullres, or 2d for Mamba-AHNet)
    fold: str = "0"                       # 0-4 or "all"
    epochs: int | None = None             # default: the trainer's (the paper's budget)
    iterations: int | None = None         # training iterations per epoch
    device: str = "auto"                  # auto, cpu or cuda
    trainer: str | None = None            # default: the model's recipe (NetworkSpec.trainer)
    features: list[int] | None = None     # stage widths (fewer than planned drops the deepest stages)
    patch_size: list[int] | None = None
    batch_size: int | None = None
    plans_name: str | None = None         # default nnUNetPlans_<model>
    processes: int = 2                    # preprocessing / augmentation worker processes
    validate: bool = True                 # nnU-Net's validation of the fold after training
    init_from: str | None = None          # start from a model package's (or stripped checkpoint's) weights

    @property
    def plans_identifier(self) -> str:
        return self.plans_name or f"nnUNetPlans_{self.model}"


@dataclass
class TrainResult:
    fold_folder: Path
    resumed_from_epoch: int
    epochs: int
    already_done: bool = False


def require_nnunet_folders() -> dict[str, Path]:
    """nnU-Net's three folders from the environment, with a clear error when one is missing."""
    folders = {}
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        if not os.environ.get(name):
            raise InputError(f"{name} is not set: give --nnunet-dir DIR (raw/, preprocessed/, results/ under it) "
                             f"or set nnUNet_raw, nnUNet_preprocessed and nnUNet_results")
        folders[name] = Path(os.environ[name])
    return folders


def use_our_trainers() -> None:
    """Put our trainer folder on ``nnUNet_extTrainer`` (keeping the user's own entries)."""
    entries = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if str(EXTERNAL_TRAINERS) not in entries:
        os.environ["nnUNet_extTrainer"] = os.pathsep.join([str(EXTERNAL_TRAINERS), *entries])


def dataset_name(dataset: str) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(int(dataset) if dataset.isdigit() else dataset)
    except RuntimeError as error:
        raise InputError(f"no nnU-Net dataset {dataset!r} under $nnUNet_raw or $nnUNet_preprocessed; "
                         "create it with 'attumamba-seg dataset'") from error


def dataset_id(name: str) -> int:
    return int(name[len("Dataset"):len("Dataset") + 3])


def ensure_default_plans(name: str, processes: int) -> dict:
    """nnU-Net's fingerprint and default plans, made once per dataset."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments

    folder = Path(os.environ["nnUNet_preprocessed"]) / name
    if not (folder / "dataset_fingerprint.json").is_file():
        extract_fingerprints([dataset_id(name)], num_processes=processes, check_dataset_integrity=True)
    if not (folder / "nnUNetPlans.json").is_file():
        plan_experiments([dataset_id(name)])
    return json.loads((folder / "nnUNetPlans.json").read_text())


def write_model_plans(name: str, request: TrainRequest, configuration: str, results: Path) -> dict:
    """Our plans next to nnU-Net's; refuse to change plans under a training that already started."""
    plans = plans_with_network(ensure_default_plans(name, request.processes), request.model, configuration,
                               features=request.features, patch_size=request.patch_size, batch_size=request.batch_size)
    plans["plans_name"] = request.plans_identifier
    path = Path(os.environ["nnUNet_preprocessed"]) / name / f"{request.plans_identifier}.json"
    if path.is_file() and json.loads(path.read_text()) != plans:
        started = any((results / name).glob(f"*__{request.plans_identifier}__*/fold_*/checkpoint_*.pth"))
        if started:
            raise InputError(f"{path.name} differs from what these options give, and a training with it exists; "
                             "rerun with the same options to resume, or give --plans-name NEW to train a variant")
    path.write_text(json.dumps(plans, indent=2))
    return plans


def ensure_preprocessed(name: str, request: TrainRequest, plans: dict, configuration: str) -> None:
    """Run nnU-Net's preprocessing for this configuration unless every training case is there."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess

    base = Path(os.environ["nnUNet_preprocessed"]) / name
    folder = base / plans["configurations"][configuration]["data_identifier"]
    cases = {p.name[: -len(".nii.gz")] for p in (Path(os.environ["nnUNet_raw"]) / name / "labelsTr").glob("*.nii.gz")}
    done = {p.stem for p in folder.glob("*.pkl")} if folder.is_dir() else set()
    if not cases or not cases <= done:
        preprocess([dataset_id(name)], request.plans_identifier, [configuration], [request.processes])


def trainer_class(name: str):
    """Our trainers and nnU-Net's own directly; any other through nnU-Net's lookup (and nnUNet_extTrainer).

    nnU-Net's lookup imports every trainer module it ships until it finds the name, and some of
    those import timm, which this environment leaves out on purpose; so ours never go through it.
    """
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from . import trainers

    if name == "nnUNetTrainer":
        return nnUNetTrainer
    found = getattr(trainers, name, None)
    if isinstance(found, type) and issubclass(found, nnUNetTrainer):
        return found
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(name)
    except (RuntimeError, ImportError) as error:
        raise InputError(f"cannot load nnU-Net trainer {name!r}: {error}") from error


def train(request: TrainRequest, on_epoch: Callable[[int, int, dict], None] | None = None,
          should_cancel: Callable[[], bool] | None = None) -> TrainResult:
    """Plan, preprocess and train (or resume); returns the fold folder with nnU-Net's checkpoints."""
    import torch
    from nnunetv2.run.run_training import maybe_load_checkpoint

    spec = network_spec(request.model)
    configuration = request.configuration or spec.configuration
    if request.fold != "all" and not request.fold.isdigit():
        raise InputError(f"--fold must be a number or 'all', not {request.fold!r}")
    folders = require_nnunet_folders()
    name = dataset_name(str(request.dataset))
    device = resolve_device(request.device)
    use_our_trainers()
    os.environ.setdefault("nnUNet_n_proc_DA", str(max(1, request.processes)))
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)

    plans = write_model_plans(name, request, configuration, folders["nnUNet_results"])
    ensure_preprocessed(name, request, plans, configuration)
    fold = request.fold if request.fold == "all" else int(request.fold)
    dataset_json = json.loads((Path(os.environ["nnUNet_preprocessed"]) / name / "dataset.json").read_text())
    cls = trainer_class(request.trainer or spec.trainer)
    output = folders["nnUNet_results"] / name / f"{cls.__name__}__{request.plans_identifier}__{configuration}" / f"fold_{fold}"
    resume = (output / "checkpoint_latest.pth").is_file()
    trainer = cls(plans={**plans, "continue_training": resume}, configuration=configuration, fold=fold,
                  dataset_json=dataset_json, device=device)
    for attribute, value in (("num_epochs", request.epochs), ("num_iterations_per_epoch", request.iterations)):
        if value is not None:
            if value < 1:
                raise InputError(f"--{attribute.split('_')[1]} must be at least 1")
            setattr(trainer, attribute, value)
    if request.iterations is not None:  # validation keeps the recipe's share of an epoch (nnU-Net's: 50 per 250)
        share = getattr(cls, "val_iterations", 50) / getattr(cls, "iterations", 250)
        trainer.num_val_iterations_per_epoch = max(1, round(request.iterations * share))
    if hasattr(trainer, "on_epoch"):
        trainer.on_epoch = on_epoch
        trainer.should_cancel = should_cancel or (lambda: False)
    if (output / "checkpoint_final.pth").is_file():
        return TrainResult(output, trainer.num_epochs, trainer.num_epochs, already_done=True)
    maybe_load_checkpoint(trainer, continue_training=resume, validation_only=False)
    if request.init_from and not resume:  # a resumed run already holds its own (fine-tuned) weights
        trainer.initialize()
        initialise_weights(trainer.network, request.init_from)
    start = trainer.current_epoch
    (output.parent / "attumamba_train_request.json").write_text(json.dumps(asdict(request), indent=2))
    trainer.run_training()
    if request.validate:
        trainer.perform_actual_validation(False)
    return TrainResult(output, start, trainer.num_epochs)


def initialise_weights(network, source: str) -> int:
    """Copy weights from a model package (installed name, folder or zip) or a weights-only checkpoint.

    Every layer must match by name and shape, as for fine-tuning a shipped model on one's own data;
    only the final segmentation layers may differ (another label set), and then keep their fresh
    initialisation. Returns the number of tensors copied.
    """
    import torch

    from ..inference.package import load_weights, resolve_model

    path = Path(source).expanduser()
    # keep the package referenced while its checkpoint is read: a zip's unpacked copy goes with it
    package = None if path.suffix == ".pth" else resolve_model(source)
    checkpoint = path if package is None else package.checkpoints[0]
    weights = load_weights(checkpoint)["network_weights"]
    own = network.state_dict()
    hint = ("train with the same --model, --features and --patch as the source model "
            "(its model.json lists the training commands)")
    missing = [k for k in own if k not in weights]
    mismatched = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if [k for k in missing + mismatched if ".seg_layers." not in k]:
        raise InputError(f"--init-from {source}: its network differs from this one "
                         f"({len(missing)} layers missing, {len(mismatched)} of another shape, e.g. "
                         f"{(missing + mismatched)[0]}); {hint}")
    copied = {k: v for k, v in weights.items() if k in own and v.shape == own[k].shape}
    with torch.no_grad():
        network.load_state_dict({**own, **copied})
    return len(copied)
