"""nnU-Net's own tools with our trainers: its class lookup finds every one of them through
``nnUNet_extTrainer``, stock ``nnUNetv2_train`` trains one with our plans, and the results folder
it writes (its checkpoint holds numpy scalars) is usable as a model, a package and --init-from
without unsafe unpickling.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from test_nets_checkpoint import MakesFolder
from tiny_model import small_study, tiny_plans

from attumamba.cli import main as cli_main
from attumamba.inference.package import build_manifest
from attumamba.nets import NETWORKS
from attumamba.training import trainers
from attumamba.training.train import EXTERNAL_TRAINERS, initialise_weights

DATASET_ID, DATASET = 602, "Dataset602_TinyStock"
PLANS, TRAINER = "nnUNetPlans_stock", "nnUNetTrainerAttUMamba"


def registered_trainers() -> set[str]:
    """Our trainer recipes: those the models use and every one trainers.py defines."""
    named = {spec.trainer for spec in NETWORKS.values() if spec.trainer != "nnUNetTrainer"}
    return named | {name for name in vars(trainers) if name.startswith("nnUNetTrainer") and name != "nnUNetTrainer"}


def find_like_nnunet(name: str):
    """nnU-Net's lookup of a trainer in an ``nnUNet_extTrainer`` folder (find_objects.py, 2.8.1)."""
    folder = str(EXTERNAL_TRAINERS)
    return recursive_find_python_class(folder, name, None, base_folder=folder, cleanup_imports_from_base_folder=True)


def test_nnunets_lookup_finds_every_trainer_we_register():
    names = registered_trainers()
    assert {"nnUNetTrainerAttUMamba", "nnUNetTrainerAttUMambaCPU", "nnUNetTrainerLightMUNet"} <= names
    for name in sorted(names):
        assert find_like_nnunet(name) is getattr(trainers, name), name


def write_tiny_raw_dataset(raw: Path, shape: list[int]) -> None:
    """Two CT/PET cases of one patch at 5 mm with one hot lesion each: small enough for nnU-Net's
    preprocessing, training and validation (one tile per case) to take seconds."""
    folder = raw / DATASET
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    z, y, x = np.indices(shape)
    for case, centre in enumerate(((10, 14, 18), (8, 20, 12))):
        rng = np.random.default_rng(case)
        lesion = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= 9
        volumes = {"_0000": rng.normal(40, 20, shape), "_0001": 1.0 + rng.random(shape) + 8.0 * lesion}
        for suffix, array in volumes.items():
            image = sitk.GetImageFromArray(array.astype(np.float32))
            image.SetSpacing((5.0, 5.0, 5.0))
            sitk.WriteImage(image, str(folder / "imagesTr" / f"case{case}{suffix}.nii.gz"))
        label = sitk.GetImageFromArray(lesion.astype(np.uint8))
        label.SetSpacing((5.0, 5.0, 5.0))
        sitk.WriteImage(label, str(folder / "labelsTr" / f"case{case}.nii.gz"))
    generate_dataset_json(str(folder), {0: "CT", 1: "CT"}, {"background": 0, "lesion": 1}, 2, ".nii.gz",
                          dataset_name=DATASET)


def write_our_plans(preprocessed: Path) -> dict:
    """Our Att-UMamba plans (``plans_with_network``, 5 mm, widths 8-32), as ``attumamba-seg train``
    writes them; nnU-Net's own planner is skipped only because it takes a minute on two cores."""
    plans = {**tiny_plans(), "dataset_name": DATASET, "plans_name": PLANS}
    (preprocessed / DATASET).mkdir(parents=True, exist_ok=True)
    (preprocessed / DATASET / f"{PLANS}.json").write_text(json.dumps(plans))
    return plans


def timm_standin() -> dict[str, types.ModuleType]:
    """Modules that let nnU-Net's lookup import its Primus trainers where timm is not installed.

    nnU-Net imports every trainer module it ships before it reads ``nnUNet_extTrainer``; its
    Primus trainers import timm, which this project installs without (Backend/pyproject.toml).
    Nothing here is called: our trainers do not use timm.
    """
    def placeholder(attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return type(attribute, (), {})

    modules = {}
    for name in ("timm", "timm.layers", "timm.models", "timm.models.eva"):
        modules[name] = types.ModuleType(name)
        modules[name].__getattr__ = placeholder
    return modules


@pytest.fixture(scope="module")
def stock_results(tmp_path_factory):
    """A results folder written by stock ``nnUNetv2_train`` (``run_training``, what the console
    script calls) with our plans and trainer: one epoch of 2 iterations, then nnU-Net's validation."""
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as nnunet_trainer_module
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, preprocess
    from nnunetv2.run.run_training import run_training

    root = tmp_path_factory.mktemp("stock")
    plans = write_our_plans(root / "preprocessed")
    write_tiny_raw_dataset(root / "raw", plans["configurations"]["3d_fullres"]["patch_size"])
    with pytest.MonkeyPatch.context() as patch:
        for name, folder in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"), ("nnUNet_results", "results")):
            patch.setenv(name, str(root / folder))
        shutil.copy(root / "raw" / DATASET / "dataset.json", root / "preprocessed" / DATASET / "dataset.json")
        extract_fingerprints([DATASET_ID], num_processes=1)  # nnUNetv2_extract_fingerprint
        preprocess([DATASET_ID], PLANS, ["3d_fullres"], [1])  # nnUNetv2_preprocess

        patch.setenv("nnUNet_extTrainer", str(EXTERNAL_TRAINERS))
        patch.setenv("nnUNet_n_proc_DA", "0")  # augmentation in this process
        patch.setattr(nnunet_trainer_module, "default_num_processes", 1)  # the validation's export pool
        for attribute, value in (("epochs", 1), ("iterations", 2), ("val_iterations", 1)):
            patch.setattr(trainers.nnUNetTrainerAttUMamba, attribute, value)
        if importlib.util.find_spec("timm") is None:
            for name, module in timm_standin().items():
                patch.setitem(sys.modules, name, module)
        run_training(str(DATASET_ID), "3d_fullres", "all", TRAINER, PLANS, device=torch.device("cpu"))
    return root / "results" / DATASET / f"{TRAINER}__{PLANS}__3d_fullres"


@pytest.mark.slow
def test_stock_nnunetv2_train_trains_our_trainer_with_our_plans(stock_results):
    fold = stock_results / "fold_all"
    assert json.loads((fold / "validation" / "summary.json").read_text())["foreground_mean"]  # nnU-Net validated it
    plans = json.loads((stock_results / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] == "attumamba.nets.AttUMamba"
    with pytest.raises(Exception, match="numpy"):  # nnU-Net's file holds numpy scalars: a plain weights-only load fails
        torch.load(fold / "checkpoint_final.pth", weights_only=True)


@pytest.mark.slow
def test_a_stock_results_folder_is_a_model_and_packages(stock_results, tmp_path):
    ct, pet = small_study()
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(pet, str(tmp_path / "pet.nii.gz"))
    model = tmp_path / stock_results.name  # the results folder as nnU-Net wrote it, plus model.json
    shutil.copytree(stock_results, model)
    manifest = build_manifest(model, name="stock", display_name="Stock nnU-Net run")
    (model / "model.json").write_text(json.dumps(manifest))
    study = ["--ct", str(tmp_path / "ct.nii.gz"), "--pet", str(tmp_path / "pet.nii.gz"), "--device", "cpu"]
    assert cli_main(["segment", *study, "--model", str(model), "-o", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "lesions.json").read_text())["totals"]["n_lesions"] >= 0

    assert cli_main(["package", str(stock_results), "-o", str(tmp_path / "package"), "--name", "stock"]) == 0
    stripped = torch.load(tmp_path / "package" / "fold_all" / "checkpoint_final.pth", weights_only=True)
    assert stripped["trainer_name"] == TRAINER and stripped["current_epoch"] == 1


@pytest.mark.slow
def test_init_from_reads_a_stock_checkpoint(stock_results):
    configuration = PlansManager(json.loads((stock_results / "plans.json").read_text())).get_configuration("3d_fullres")
    network = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                     configuration.network_arch_init_kwargs_req_import, 2, 2, deep_supervision=True)
    copied = initialise_weights(network, str(stock_results / "fold_all" / "checkpoint_final.pth"))
    assert copied == len(network.state_dict())


@pytest.mark.slow
def test_package_refuses_a_training_whose_checkpoint_carries_code(stock_results, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    training = tmp_path / stock_results.name
    shutil.copytree(stock_results, training)
    checkpoint = training / "fold_all" / "checkpoint_final.pth"
    saved = torch.load(checkpoint, weights_only=False)  # written by this module's own run
    torch.save({**saved, "extra": MakesFolder(marker)}, checkpoint)
    assert cli_main(["package", str(training), "-o", str(tmp_path / "package"), "--name", "unsafe"]) == 2
    assert f"needs {os.mkdir.__module__}.mkdir to load" in capsys.readouterr().err
    assert not marker.exists()
