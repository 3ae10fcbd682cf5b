"""Model packages (folder, zip, unsafe or broken ones) and the segmenter on a small CT/PET pair."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from tiny_model import make_tiny_package, small_study

from attumamba.errors import CancelledError, InputError
from attumamba.inference import Segmenter, open_model, resolve_model
from attumamba.io import resample_to


@pytest.fixture(scope="module")
def package_folder(tmp_path_factory):
    return make_tiny_package(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def segmenter(package_folder):
    return Segmenter(open_model(package_folder), "cpu")


def test_mask_on_the_ct_grid_is_the_thresholded_linear_resample_of_the_pet_grid_probability(segmenter):
    ct, pet = small_study()
    result = segmenter.segment(ct, pet)
    assert result.mask.GetSize() == ct.GetSize() and result.mask.GetSpacing() == ct.GetSpacing()
    assert result.probability.GetSize() == pet.GetSize() and result.probability.GetOrigin() == pet.GetOrigin()
    expected = sitk.GetArrayFromImage(resample_to(result.probability, ct, kind="image", default=0.0)) >= 0.5
    assert np.array_equal(sitk.GetArrayFromImage(result.mask).astype(bool), expected)
    probability = sitk.GetArrayFromImage(result.probability)
    assert 0.0 <= probability.min() and probability.max() <= 1.0
    assert set(result.timings) == {"preprocessing", "network", "resampling"}

    on_pet = segmenter.segment(ct, pet, reference="pet")
    assert on_pet.mask.GetSize() == pet.GetSize()
    assert np.array_equal(sitk.GetArrayFromImage(on_pet.mask).astype(bool), probability >= 0.5)


def test_a_confident_model_marks_everything_and_tta_keeps_it(tmp_path):
    ct, pet = small_study()
    everywhere = Segmenter(open_model(make_tiny_package(tmp_path / "all", bias_lesion=20.0)), "cpu", tta=True)
    assert sitk.GetArrayFromImage(everywhere.segment(ct, pet).mask).all()


def test_progress_is_monotonic_and_cancel_stops_the_run(segmenter):
    ct, pet = small_study()
    seen = []
    segmenter.segment(ct, pet, progress=lambda fraction, stage: seen.append((fraction, stage)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert [s for _, s in seen][0] == "preprocessing" and "network" in {s for _, s in seen}
    with pytest.raises(CancelledError):
        segmenter.segment(ct, pet, should_cancel=lambda: True)


def test_bad_volumes_are_refused_with_a_reason(segmenter):
    ct, pet = small_study()
    nan_pet = sitk.Image(pet)
    nan_pet[3, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        segmenter.segment(ct, nan_pet)
    moved = sitk.Image(pet)
    moved.SetOrigin((900.0, 0.0, 0.0))
    with pytest.raises(InputError, match="overlap"):
        segmenter.segment(ct, moved)
    with pytest.raises(InputError, match="reference"):
        segmenter.segment(ct, pet, reference="mr")


def test_a_zipped_package_opens_and_segments_the_same(package_folder, segmenter, tmp_path):
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in package_folder.rglob("*"):
            handle.write(path, path.relative_to(package_folder.parent))
    zipped = Segmenter(open_model(archive), "cpu")
    ct, pet = small_study()
    assert np.array_equal(sitk.GetArrayFromImage(zipped.segment(ct, pet).probability),
                          sitk.GetArrayFromImage(segmenter.segment(ct, pet).probability))


class Payload:
    """Anything beyond tensors makes ``weights_only=True`` refuse a checkpoint."""


def test_an_unsafe_checkpoint_is_refused(package_folder, tmp_path):
    unsafe = tmp_path / "unsafe"
    shutil.copytree(package_folder, unsafe)
    checkpoint = unsafe / "fold_all" / "checkpoint_final.pth"
    saved = torch.load(checkpoint, weights_only=True)
    torch.save({**saved, "extra": Payload()}, checkpoint)
    with pytest.raises(InputError, match="refused"):
        Segmenter(open_model(unsafe), "cpu")


def test_broken_packages_say_what_is_missing(package_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(package_folder, broken)
    manifest = json.loads((broken / "model.json").read_text())
    del manifest["configuration"]
    (broken / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="configuration"):
        open_model(broken)
    (broken / "model.json").write_text(json.dumps({**manifest, "configuration": "3d_fullres"}))
    (broken / "fold_all" / "checkpoint_final.pth").unlink()
    with pytest.raises(InputError, match="checkpoint_final"):
        open_model(broken)
    with pytest.raises(InputError, match="unknown model"):
        resolve_model("no-such-model")
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(InputError, match="not a zip"):
        open_model(tmp_path / "not.zip")


def test_models_in_extra_folders_are_listed_by_name(package_folder, monkeypatch):
    monkeypatch.setenv("ATTUMAMBA_MODELS", str(package_folder.parent))
    assert resolve_model("tiny").root == package_folder
