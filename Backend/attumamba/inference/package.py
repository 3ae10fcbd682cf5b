"""Model packages (DESIGN.md §3): an nnU-Net results folder plus ``model.json``, as a folder or zip.

A package is opened without trusting it: the manifest is checked for what inference needs,
and checkpoints load with ``weights_only=True`` so a pickled payload cannot run code. Listing
the installed packages reads them in place (a zip is read, CRC-checked once per version, never
unpacked), so a damaged package is listed as broken with its reason and never stops the others;
only the package a job uses is unpacked, into this process's private folder (:mod:`.extraction`).
"""

from __future__ import annotations

import json
import os
import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import InputError
from . import extraction
from .package_files import CHECKPOINT, ZIP_ERRORS, FolderFiles, ZipFiles, open_zip, package_files, read_json

#: Shipped packages live beside the ``attumamba`` package; ATTUMAMBA_MODELS adds folders (os.pathsep-separated).
SHIPPED_MODELS = Path(__file__).resolve().parents[2] / "models"
REQUIRED_KEYS = ("name", "display_name", "architecture", "inputs", "labels", "configuration")
SUPPORTED_INPUTS = (["CT", "PET"],)
SUMMARY_KEYS = ("name", "display_name", "description", "architecture", "inputs", "labels", "configuration",
                "target_spacing_mm", "license", "training", "metrics")


@dataclass
class ModelPackage:
    """One opened model: its manifest, nnU-Net plans and dataset.json, and checkpoints."""

    root: Path
    manifest: dict
    plans: dict
    dataset_json: dict
    checkpoints: list[Path] = field(default_factory=list)
    source: Path | None = None  # the folder or zip it was opened from (a zip's ``root`` is a private copy)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def configuration(self) -> str:
        return self.manifest["configuration"]

    def summary(self) -> dict:
        """What ``/v1/models`` and ``attumamba-seg models`` show."""
        return _summary(self.manifest, [c.parent.name for c in self.checkpoints], self.source or self.root)


@dataclass
class InstalledModel:
    """A package found in the model folders, read in place; ``problem`` says why it cannot be used."""

    path: Path
    manifest: dict = field(default_factory=dict)
    folds: list[str] = field(default_factory=list)
    problem: str = ""

    @property
    def name(self) -> str:
        name = self.manifest.get("name")
        return str(name) if name else self.path.name.removesuffix(".zip")

    def summary(self) -> dict:
        if not self.problem:
            return _summary(self.manifest, self.folds, self.path)
        return {"name": self.name, "display_name": f"{self.name} (broken)", "description": f"cannot be used: "
                f"{self.problem}", "folds": self.folds, "path": str(self.path), "broken": True, "reason": self.problem}


def open_model(path: str | Path) -> ModelPackage:
    """Open a package folder or ``.zip`` (a zip is unpacked into this process's private folder for as
    long as the package object lives; a failed or refused extraction leaves nothing behind)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"model {path} does not exist; give a package folder or zip, or a name from 'attumamba-seg models'")
    if not path.is_file():
        return _open_folder(path, path)
    with open_zip(path) as archive:
        _contents(ZipFiles(archive, path))  # refuse a bad manifest before unpacking anything
        try:
            unpacked = extraction.unpack(archive)
        except ZIP_ERRORS as error:
            raise InputError(f"{path} cannot be unpacked ({error}); if the zip is damaged, copy it again") from None
    try:
        package = _open_folder(_package_root(unpacked), path)
    except BaseException:
        shutil.rmtree(unpacked, ignore_errors=True)
        raise
    weakref.finalize(package, shutil.rmtree, unpacked, ignore_errors=True)
    return package


def model_folders() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("ATTUMAMBA_MODELS", "").split(os.pathsep) if p]
    return [SHIPPED_MODELS, *extra]


def list_models() -> list[InstalledModel]:
    """Every package in the model folders, usable or broken (with why), read without unpacking."""
    found = []
    for folder in model_folders():
        for candidate in sorted(folder.glob("*")) if folder.is_dir() else []:
            if (candidate / "model.json").is_file() or (candidate.suffix == ".zip" and candidate.is_file()):
                found.append(_inspect(candidate))
    return found


def installed_models() -> list[InstalledModel]:
    """The usable packages, one per name (the first found wins)."""
    usable: dict[str, InstalledModel] = {}
    for model in list_models():
        if not model.problem:
            usable.setdefault(model.name, model)
    return list(usable.values())


def locate_model(name_or_path: str | Path | None) -> Path:
    """The package folder or zip a model name (default: the default model) or path stands for, unopened."""
    listed = list_models()
    usable = [model for model in listed if not model.problem]
    if name_or_path is None:
        if not usable:
            broken = "; ".join(f"{m.path}: {m.problem}" for m in listed)
            raise InputError(f"no usable model is installed (looked in {', '.join(map(str, model_folders()))})"
                             + (f"; broken: {broken}" if broken else ""))
        return next((m for m in usable if m.manifest.get("default")), usable[0]).path
    name = str(name_or_path)
    chosen = next((m for m in usable if m.name == name), None) or next((m for m in listed if m.name == name), None)
    if chosen is not None and chosen.problem:
        raise InputError(f"model {name!r} ({chosen.path}) cannot be used: {chosen.problem}")
    if chosen is not None:
        return chosen.path
    if Path(name).expanduser().exists():
        return Path(name).expanduser()
    names = ", ".join(m.name for m in installed_models()) or "none"
    raise InputError(f"unknown model {name!r}; installed: {names}. Give a name or a package folder/zip")


def resolve_model(name_or_path: str | Path | None) -> ModelPackage:
    """A model by installed name (default: the default one) or by package path, opened."""
    return open_model(locate_model(name_or_path))


def load_weights(checkpoint: Path) -> dict:
    """A checkpoint's network weights, refusing files that need arbitrary unpickling."""
    from ..nets.checkpoint_file import read_checkpoint

    saved = read_checkpoint(checkpoint)
    weights = saved.get("network_weights") if isinstance(saved, dict) else None
    if not isinstance(weights, dict):
        raise InputError(f"{checkpoint} holds no 'network_weights'; it is not an nnU-Net checkpoint")
    return {"network_weights": weights,
            "mirror_axes": tuple(saved.get("inference_allowed_mirroring_axes") or ())}


def export_package(fold_folders: list[Path], out: Path, manifest: dict) -> ModelPackage:
    """Write a package from nnU-Net fold folders: plans, dataset.json, stripped checkpoints, manifest."""
    import torch

    from ..nets.checkpoint_file import read_checkpoint

    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty; choose a new folder for the package")
    out.mkdir(parents=True, exist_ok=True)
    training = fold_folders[0].parent
    shutil.copy(training / "plans.json", out / "plans.json")
    shutil.copy(training / "dataset.json", out / "dataset.json")
    for fold in fold_folders:
        saved = read_checkpoint(fold / "checkpoint_final.pth")
        (out / fold.name).mkdir()
        torch.save({"network_weights": saved["network_weights"], "trainer_name": str(saved["trainer_name"]),
                    "inference_allowed_mirroring_axes": tuple(int(a) for a in saved.get("inference_allowed_mirroring_axes") or ()),
                    "current_epoch": int(saved["current_epoch"])}, out / fold.name / "checkpoint_final.pth")
    (out / "model.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return open_model(out)


def build_manifest(results: Path, *, name: str, display_name: str, description: str = "", license: str = "unspecified",
                   training: dict | None = None, metrics: dict | None = None) -> dict:
    """``model.json`` for an nnU-Net results folder ``<Trainer>__<Plans>__<configuration>``."""
    from ..nets import NETWORKS

    parts = results.name.split("__")
    if len(parts) != 3:
        raise InputError(f"{results} is not an nnU-Net results folder named <Trainer>__<Plans>__<configuration>")
    trainer, _, configuration = parts
    plans = read_json(results / "plans.json", "the nnU-Net plans")
    dataset = read_json(results / "dataset.json", "the nnU-Net dataset.json")
    resolved = plans["configurations"][configuration]
    class_name = resolved["architecture"]["network_class_name"]
    architecture = next((key for key, spec in NETWORKS.items() if spec.class_path == class_name), class_name)
    lesion_labels = {k: v for k, v in dataset["labels"].items() if k != "background"}
    return {
        "name": name, "display_name": display_name, "description": description, "architecture": architecture,
        "trainer": trainer, "configuration": configuration, "inputs": ["CT", "PET"],
        "input_units": {"CT": "HU, resampled onto the PET grid", "PET": "SUVbw"},
        "labels": {label: {"value": value, "category": "SCT 49755003 Morphologically abnormal structure",
                           "type": "SCT 108369006 Neoplasm"} for label, value in lesion_labels.items()},
        "target_spacing_mm": resolved["spacing"][::-1], "patch_size": resolved["patch_size"],
        "license": license, "training": training or {}, "metrics": metrics or {},
    }


def _summary(manifest: dict, folds: list[str], path: Path) -> dict:
    return {**{k: manifest.get(k) for k in SUMMARY_KEYS}, "folds": folds, "path": str(path), "broken": False}


def _open_folder(root: Path, source: Path) -> ModelPackage:
    files = FolderFiles(root, manifest=_stock_results_manifest(root))
    manifest, plans, dataset_json, checkpoints = _contents(files)
    return ModelPackage(root, manifest, plans, dataset_json, [root / c for c in checkpoints], source)


def _stock_results_manifest(root: Path) -> dict | None:
    """For a results folder of stock ``nnUNetv2_train`` (``<Trainer>__<Plans>__<configuration>``, no
    ``model.json``): the manifest ``package`` would write, so ``--model`` can point at it directly."""
    if (root / "model.json").exists() or len(root.name.split("__")) != 3 or not (root / "plans.json").is_file():
        return None
    name = f"{root.parent.name}/{root.name}"
    return build_manifest(root, name=name, display_name=name, license="unknown (trained outside AttUMambaSeg)",
                          description="an nnU-Net results folder without model.json: no held-out metrics recorded; "
                                      "'attumamba-seg package' makes a package of it")


def _inspect(path: Path) -> InstalledModel:
    """A listing entry: the package's manifest and folds, or what is wrong with it."""
    try:
        with package_files(path) as files:
            try:
                manifest, _, _, checkpoints = _contents(files)
                files.verify()
            except InputError as error:
                return InstalledModel(path, _manifest_if_readable(files), problem=str(error))
    except InputError as error:
        return InstalledModel(path, problem=str(error))
    except Exception as error:  # noqa: BLE001 (one odd package must never hide the others)
        return InstalledModel(path, problem=f"it cannot be read ({type(error).__name__}: {error})")
    return InstalledModel(path, manifest, [PurePosixPath(c).parent.name for c in checkpoints])


def _contents(files) -> tuple[dict, dict, dict, list[str]]:
    """Manifest, plans, dataset.json and checkpoint names of a package, checked for what inference needs."""
    manifest = files.json("model.json", "the package's manifest")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise InputError(f"{files.where('model.json')} lacks {', '.join(missing)}; see DESIGN.md §3 for the manifest")
    wrong = [key for key in ("name", "configuration") if not isinstance(manifest[key], str) or not manifest[key]]
    if wrong:
        raise InputError(f"{files.where('model.json')}: {', '.join(wrong)} must be a non-empty text")
    if manifest["inputs"] not in SUPPORTED_INPUTS:
        raise InputError(f"model {manifest['name']!r} wants inputs {manifest['inputs']}; this backend feeds CT and PET")
    plans = files.json("plans.json", "the nnU-Net plans")
    if manifest["configuration"] not in (plans.get("configurations") or {}):
        raise InputError(f"plans.json has no configuration {manifest['configuration']!r} named by model.json")
    checkpoints = files.checkpoints()
    if not checkpoints:
        raise InputError(f"{files.where('')} holds no fold_*/{CHECKPOINT}; the package is incomplete")
    return manifest, plans, files.json("dataset.json", "the nnU-Net dataset.json"), checkpoints


def _manifest_if_readable(files) -> dict:
    try:
        return files.json("model.json", "the package's manifest")
    except InputError:
        return {}


def _package_root(unpacked: Path) -> Path:
    """The folder holding ``model.json`` (a zip may hold the package folder itself or its contents)."""
    manifests = list(unpacked.rglob("model.json"))
    return manifests[0].parent if len(manifests) == 1 else unpacked
