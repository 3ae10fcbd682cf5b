"""Checkpoint files are read weights-only: nnU-Net's numpy scalars load, anything that could run
code is refused with its name, and the allowance never outlives one load.

The checkpoint nnU-Net's own trainer writes is tested in test_training_ext_trainers.py (a stock
``nnUNetv2_train`` run); here the same numpy content is written directly.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from attumamba.errors import InputError
from attumamba.nets import load_published_weights
from attumamba.nets.checkpoint_file import read_checkpoint


class MakesFolder:
    """Unpickling this runs ``os.mkdir(path)``: a visible stand-in for a payload."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def nnunet_like_checkpoint(model: nn.Module) -> dict:
    """What nnU-Net's save_checkpoint stores besides the weights: numpy float32/float64 scalars."""
    return {"network_weights": model.state_dict(), "optimizer_state": {"state": {}, "param_groups": []},
            "grad_scaler_state": None, "current_epoch": 3, "trainer_name": "nnUNetTrainer",
            "logging": {"train_losses": [np.float32(0.7), np.float32(0.5)], "mean_fg_dice": [np.float64(0.2)],
                        "dice_per_class_or_region": [[np.float32(0.2)]], "lrs": [0.01, 0.009]},
            "_best_ema": np.float64(0.2), "init_args": {"fold": 0, "device": torch.device("cpu")},
            "inference_allowed_mirroring_axes": (0, 1, 2)}


def test_numpy_scalars_as_nnunet_writes_them_load_weights_only(tmp_path):
    model = nn.Conv3d(2, 3, 3)
    path = tmp_path / "checkpoint_final.pth"
    torch.save(nnunet_like_checkpoint(model), path)
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(path, weights_only=True)  # what a plain weights-only load does with it
    saved = read_checkpoint(path)
    assert saved["_best_ema"] == np.float64(0.2) and saved["logging"]["train_losses"][1] == np.float32(0.5)
    fresh = nn.Conv3d(2, 3, 3)
    load_published_weights(fresh, path)
    assert torch.equal(fresh.weight, model.weight)
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(path, weights_only=True)  # allowed for that one load only, not process-wide


def test_numpy_1_names_load_too(tmp_path):
    """Checkpoints written under numpy 1 (U-Mamba's authors pinned torch 2.0.1) name ``numpy.core``."""
    path = tmp_path / "legacy.pth"
    torch.save({"network_weights": {"w": torch.ones(2)}, "_best_ema": np.float32(0.4)}, path,
               _use_new_zipfile_serialization=False)  # one plain pickle stream: the module name is editable
    data = path.read_bytes()
    assert data.count(b"numpy._core.multiarray\nscalar") == 1
    path.write_bytes(data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    assert read_checkpoint(path)["_best_ema"] == np.float32(0.4)


def test_a_checkpoint_that_needs_an_unsafe_global_is_refused_with_a_message_that_names_it(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "checkpoint_final.pth"
    torch.save({**nnunet_like_checkpoint(nn.Conv3d(2, 3, 3)), "extra": MakesFolder(marker)}, path)
    with pytest.raises(InputError) as refused:
        load_published_weights(nn.Conv3d(2, 3, 3), path)
    message = str(refused.value)
    assert f"needs {os.mkdir.__module__}.mkdir to load" in message and "refused" in message
    assert "weights_only=False" in message and "save its weights alone" in message  # what to do
    assert "add_safe_globals" not in message  # never advise allowlisting what the file asks for
    assert not marker.exists()


def test_a_pickled_class_of_our_own_is_refused_too(tmp_path):
    path = tmp_path / "module.pth"
    torch.save({"network_weights": nn.Conv3d(2, 3, 3)}, path)  # a whole module, not a state dict
    with pytest.raises(InputError, match=r"needs .*torch\.nn\.modules\.conv\.Conv3d"):
        read_checkpoint(path)


@pytest.mark.parametrize("content", [None, b"not a checkpoint", b"PK\x03\x04truncated"])
def test_files_that_are_not_checkpoints_say_so(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=r"cannot read .*weights\.pth.*Give a PyTorch checkpoint"):
        read_checkpoint(path)


def test_a_stock_results_folder_without_model_json_opens_as_a_model(tmp_path):
    """``--model`` pointed at ``<Trainer>__<Plans>__<configuration>`` as nnUNetv2_train leaves it."""
    from tiny_model import make_tiny_package

    from attumamba.inference import open_model

    folder = make_tiny_package(tmp_path / "Dataset501_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres")
    (folder / "model.json").unlink()
    package = open_model(folder)
    assert package.name == "Dataset501_X/nnUNetTrainer__nnUNetPlans__3d_fullres"
    assert package.configuration == "3d_fullres" and package.checkpoints
    assert "no held-out metrics" in package.manifest["description"]
