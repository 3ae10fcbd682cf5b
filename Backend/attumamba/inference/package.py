"""Model packages (DESIGN.md §3): an nnU-Net results folder plus ``model.json``, as a folder or zip.

A package is opened without trusting it: the manifest is checked for what inference needs,
and checkpoints load with ``weights_only=True`` so a pickled payload cannot run code.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

#: Shipped packages live beside the ``attumamba`` package; ATTUMAMBA_MODELS adds folders (os.pathsep-separated).
SHIPPED_MODELS = Path(__file__).resolve().parents[2] / "models"
REQUIRED_KEYS = ("name", "display_name", "architecture", "inputs", "labels", "configuration")
SUPPORTED_INPUTS = (["CT", "PET"],)
MAX_UNZIPPED_BYTES = 2 * 1024 ** 3


@dataclass
class ModelPackage:
    """One installed model: its manifest, nnU-Net plans and dataset.json, and checkpoints."""

    root: Path
    manifest: dict
    plans: dict
    dataset_json: dict
    checkpoints: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def configuration(self) -> str:
        return self.manifest["configuration"]

    def summary(self) -> dict:
        """What ``/v1/models`` and ``attumamba-seg models`` show."""
        keys = ("name", "display_name", "description", "architecture", "inputs", "labels", "configuration",
                "target_spacing_mm", "license", "training", "metrics")
        return {**{k: self.manifest.get(k) for k in keys}, "folds": [c.parent.name for c in self.checkpoints],
                "path": str(self.root)}


def open_model(path: str | Path) -> ModelPackage:
    """Open a package folder or ``.zip`` (unpacked into a private temporary folder)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"model {path} does not exist; give a package folder or zip, or a name from 'attumamba-seg models'")
    unpacked = _unzip(path) if path.is_file() else None
    root = _package_root(unpacked) if unpacked else path
    manifest = _read_json(root / "model.json", "the package's manifest")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise InputError(f"{root / 'model.json'} lacks {', '.join(missing)}; see DESIGN.md §3 for the manifest")
    if list(manifest["inputs"]) not in SUPPORTED_INPUTS:
        raise InputError(f"model {manifest['name']!r} wants inputs {manifest['inputs']}; this backend feeds CT and PET")
    plans = _read_json(root / "plans.json", "the nnU-Net plans")
    if manifest["configuration"] not in plans.get("configurations", {}):
        raise InputError(f"plans.json has no configuration {manifest['configuration']!r} named by model.json")
    checkpoints = sorted(root.glob("fold_*/checkpoint_final.pth"))
    if not checkpoints:
        raise InputError(f"{root} holds no fold_*/checkpoint_final.pth; the package is incomplete")
    package = ModelPackage(root, manifest, plans, _read_json(root / "dataset.json", "the nnU-Net dataset.json"),
                           checkpoints)
    if unpacked:  # the unpacked copy lives as long as the package object
        weakref.finalize(package, shutil.rmtree, unpacked, ignore_errors=True)
    return package


def model_folders() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("ATTUMAMBA_MODELS", "").split(os.pathsep) if p]
    return [SHIPPED_MODELS, *extra]


def installed_models() -> list[ModelPackage]:
    """Every package in the model folders (unreadable ones are skipped: they cannot be chosen anyway)."""
    found: dict[str, ModelPackage] = {}
    for folder in model_folders():
        for candidate in sorted(folder.glob("*")) if folder.is_dir() else []:
            if (candidate / "model.json").is_file() or candidate.suffix == ".zip":
                try:
                    package = open_model(candidate)
                except InputError:
                    continue
                found.setdefault(package.name, package)
    return list(found.values())


def resolve_model(name_or_path: str | Path | None) -> ModelPackage:
    """A model by installed name (default: the first shipped one) or by package path."""
    models = installed_models()
    if name_or_path is None:
        if not models:
            raise InputError(f"no model is installed (looked in {', '.join(map(str, model_folders()))})")
        return next((m for m in models if m.manifest.get("default")), models[0])
    for model in models:
        if model.name == str(name_or_path):
            return model
    if Path(name_or_path).expanduser().exists():
        return open_model(name_or_path)
    names = ", ".join(m.name for m in models) or "none"
    raise InputError(f"unknown model {name_or_path!r}; installed: {names}. Give a name or a package folder/zip")


def load_weights(checkpoint: Path) -> dict:
    """A checkpoint's network weights, refusing files that need arbitrary unpickling."""
    import torch

    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InputError(f"{checkpoint} holds Python objects besides tensors, which could run code when loaded; "
                         "it is refused. Re-export the package with attumamba.inference.export_package "
                         "from the training folder") from error
    except (OSError, RuntimeError, EOFError) as error:
        raise InputError(f"cannot read {checkpoint}: {error}") from error
    weights = saved.get("network_weights") if isinstance(saved, dict) else None
    if not isinstance(weights, dict):
        raise InputError(f"{checkpoint} holds no 'network_weights'; it is not an nnU-Net checkpoint")
    return {"network_weights": weights,
            "mirror_axes": tuple(saved.get("inference_allowed_mirroring_axes") or ())}


def export_package(fold_folders: list[Path], out: Path, manifest: dict) -> ModelPackage:
    """Write a package from nnU-Net fold folders: plans, dataset.json, stripped checkpoints, manifest."""
    import torch

    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty; choose a new folder for the package")
    out.mkdir(parents=True, exist_ok=True)
    training = fold_folders[0].parent
    shutil.copy(training / "plans.json", out / "plans.json")
    shutil.copy(training / "dataset.json", out / "dataset.json")
    for fold in fold_folders:
        saved = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
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
    plans = _read_json(results / "plans.json", "the nnU-Net plans")
    dataset = _read_json(results / "dataset.json", "the nnU-Net dataset.json")
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


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path} is missing: {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path} is not valid JSON ({error}): {what}") from None


def _unzip(path: Path) -> Path:
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is a file but not a zip; give a package folder or zip")
    with zipfile.ZipFile(path) as archive:
        names = archive.infolist()
        if sum(i.file_size for i in names) > MAX_UNZIPPED_BYTES:
            raise InputError(f"{path} unpacks to more than {MAX_UNZIPPED_BYTES >> 30} GiB; refused")
        if any(Path(i.filename).is_absolute() or ".." in Path(i.filename).parts for i in names):
            raise InputError(f"{path} has entries outside the package folder; refused")
        target = Path(tempfile.mkdtemp(prefix="attumamba-model-"))
        archive.extractall(target)
    return target


def _package_root(unpacked: Path) -> Path:
    """The folder holding ``model.json`` (a zip may hold the package folder itself or its contents)."""
    manifests = list(unpacked.rglob("model.json"))
    return manifests[0].parent if len(manifests) == 1 else unpacked
