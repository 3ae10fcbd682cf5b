"""``attumamba-seg segment``, ``models`` and ``package`` as a user runs them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from tiny_model import make_tiny_package, small_study

from attumamba.cli import main as cli_main
from attumamba.inference import open_model, pipeline


def write_study(folder):
    folder.mkdir(parents=True, exist_ok=True)
    ct, pet = small_study()
    sitk.WriteImage(ct, str(folder / "ct.nii.gz"))
    sitk.WriteImage(pet, str(folder / "pet.nrrd"))
    return folder / "ct.nii.gz", folder / "pet.nrrd"


def test_segment_writes_labelmap_and_a_report_that_agree(tmp_path, capsys):
    package = make_tiny_package(tmp_path / "tiny", bias_lesion=20.0)  # everything is lesion: one big lesion
    ct, pet = write_study(tmp_path / "study")
    out = tmp_path / "out"
    assert cli_main(["segment", "--ct", str(ct), "--pet", str(pet), "--model", str(package), "--device", "cpu",
                     "-o", str(out), "--min-volume", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "1 lesions" in printed and "measurable" in printed
    labels = sitk.ReadImage(str(out / "lesions.nii.gz"))
    report = json.loads((out / "lesions.json").read_text())
    rows = list(csv.DictReader((out / "lesions.csv").open()))
    assert labels.GetSize() == sitk.ReadImage(str(ct)).GetSize()
    assert report["totals"]["n_lesions"] == len(rows) == 1
    assert report["lesions"][0]["voxels"] == int((sitk.GetArrayFromImage(labels) == 1).sum()) == 40 ** 3
    assert report["lesions"][0]["suv_max"] == 9.0 and report["model"] == "tiny"
    assert set(json.loads((out / "timings.json").read_text())) >= {"loading", "network", "lesion_analysis"}


def test_segment_reports_bad_inputs_in_one_line(tmp_path, capsys):
    package = make_tiny_package(tmp_path / "tiny")
    ct, pet = write_study(tmp_path / "study")
    hot = sitk.ReadImage(str(pet)) * 1e5  # Bq/mL handed in as if it were SUV
    sitk.WriteImage(hot, str(tmp_path / "bqml.nrrd"))
    assert cli_main(["segment", "--ct", str(ct), "--pet", str(tmp_path / "bqml.nrrd"), "--model", str(package),
                     "-o", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "not a plausible SUV" in error and "Traceback" not in error
    assert cli_main(["segment", "--ct", str(ct), "--pet", str(tmp_path / "missing.nii.gz"), "--model", str(package),
                     "-o", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_segment_output_is_atomic_and_refuses_another_study(tmp_path, capsys, monkeypatch):
    package = make_tiny_package(tmp_path / "tiny", bias_lesion=20.0)
    ct, pet = write_study(tmp_path / "study")
    other_ct, other_pet = write_study(tmp_path / "other")
    out = tmp_path / "results" / "out"
    run = ["segment", "--model", str(package), "--device", "cpu", "-o", str(out)]
    study, other = ["--ct", str(ct), "--pet", str(pet)], ["--ct", str(other_ct), "--pet", str(other_pet)]

    def contents() -> dict:
        return {path.name: path.read_bytes() for path in out.iterdir()}

    assert cli_main([*run, *study]) == 0
    first = contents()
    assert json.loads(first["study.json"])["inputs"]["ct"] == str(ct)

    assert cli_main([*run, *other]) == 2  # another study's results stay, unless --overwrite
    error = capsys.readouterr().err
    assert "another study" in error and "--overwrite" in error and contents() == first

    def report_then_disk_full(report, folder):
        (folder / "lesions.json").write_text("{")
        raise OSError("No space left on device")

    monkeypatch.setattr(pipeline, "write_report", report_then_disk_full)
    with pytest.raises(OSError):  # a run that breaks while writing leaves the earlier results whole
        cli_main([*run, *study, "--min-suv-max", "100"])
    monkeypatch.undo()
    assert contents() == first and sorted(p.name for p in out.parent.iterdir()) == ["out"]

    assert cli_main([*run, *study, "--min-suv-max", "100"]) == 0  # the same study: its results are replaced
    assert json.loads((out / "lesions.json").read_text())["totals"]["n_lesions"] == 0
    assert cli_main([*run, *other, "--overwrite"]) == 0
    assert json.loads((out / "study.json").read_text())["inputs"]["ct"] == str(other_ct)
    capsys.readouterr()

    (out / "notes.txt").write_text("mine")  # a folder with other files is never replaced, even with --overwrite
    assert cli_main([*run, *study, "--overwrite"]) == 2
    assert "never replaced" in capsys.readouterr().err and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_models_lists_packages_from_extra_folders(tmp_path, monkeypatch, capsys):
    make_tiny_package(tmp_path / "models" / "tiny")
    monkeypatch.setenv("ATTUMAMBA_MODELS", str(tmp_path / "models"))
    assert cli_main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["tiny"]["folds"] == ["fold_all"] and listed["tiny"]["architecture"] == "attumamba"


def test_package_strips_a_training_checkpoint_so_it_loads_safely(tmp_path, capsys):
    tiny = make_tiny_package(tmp_path / "tiny")
    results = tmp_path / "results" / "nnUNetTrainerAttUMambaCPU__nnUNetPlans_small__3d_fullres"
    (results / "fold_0").mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        (results / name).write_text((tiny / name).read_text())
    weights = torch.load(tiny / "fold_all" / "checkpoint_final.pth", weights_only=True)["network_weights"]
    torch.save({"network_weights": weights, "optimizer_state": {"lr": np.float64(0.01)}, "trainer_name": "x",
                "logging": {"train_losses": [np.float32(0.5)]}, "current_epoch": 40,
                "inference_allowed_mirroring_axes": (0, 1, 2)}, results / "fold_0" / "checkpoint_final.pth")
    metrics = tmp_path / "summary.json"
    metrics.write_text(json.dumps({"mean": {"dice": 0.81, "fpv_ml": 1.2}}))
    out = tmp_path / "package"
    assert cli_main(["package", str(results), "-o", str(out), "--name", "mine", "--metrics", str(metrics)]) == 0
    assert "packaged mine (fold_0)" in capsys.readouterr().out
    package = open_model(out)
    assert package.manifest["architecture"] == "attumamba" and package.manifest["metrics"]["dice"] == 0.81
    assert package.manifest["trainer"] == "nnUNetTrainerAttUMambaCPU"
    saved = torch.load(out / "fold_0" / "checkpoint_final.pth", weights_only=True)  # would raise if unsafe
    assert set(saved) == {"network_weights", "trainer_name", "inference_allowed_mirroring_axes", "current_epoch"}
    assert cli_main(["package", str(results), "-o", str(out), "--name", "again"]) == 2  # never overwrites
