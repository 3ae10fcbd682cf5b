"""`attumamba-seg train`: every model through the real nnU-Net v2 pipeline on CPU (a few iterations).

One tiny synthetic dataset is planned and preprocessed by nnU-Net once; each model then trains
one short epoch with its paper's trainer. Checked: nnU-Net's final checkpoint holds weights
that load strictly into the network the plans name, the losses are finite, the trainer is
the model's recipe, a cancelled run resumes from its last epoch, and plans cannot change
under a started training.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_env import nnunet_folders

from attumamba.cli import main as cli_main
from attumamba.errors import CancelledError, InputError
from attumamba.nets import NETWORKS
from attumamba.synth import synthesize
from attumamba.training import convert_studies
from attumamba.training.train import TrainRequest, train

DATASET = "601"
FIXED_TOPOLOGY_PATCH = {"lightmunet": [16, 16, 16], "lightmunet-light": [16, 16, 16], "mpunet": [16, 16, 16],
                        "mambaahnet": [32, 32]}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """nnU-Net folders with a 2-study synthetic dataset; one augmentation worker."""
    root = tmp_path_factory.mktemp("nnunet")
    synthesize(root / "studies", 2, seed=31, profile="compact")
    convert_studies(root / "studies", root / "raw", int(DATASET), "TinyPETCT")
    with nnunet_folders(root):
        yield root


def tiny_request(model: str, **overrides) -> TrainRequest:
    shape = {"features": None, "patch_size": FIXED_TOPOLOGY_PATCH[model]} if model in FIXED_TOPOLOGY_PATCH else \
        {"features": [4, 8, 16], "patch_size": [16, 32, 32]}
    options = dict(dataset=DATASET, model=model, fold="all", epochs=1, iterations=2, device="cpu", batch_size=2,
                   processes=1, validate=False, **shape)
    options.update(overrides)
    return TrainRequest(**options)


def load_checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("model", list(NETWORKS))
def test_every_model_trains_through_nnunet_and_its_checkpoint_loads_into_the_planned_network(workspace, model):
    spec = NETWORKS[model]
    result = train(tiny_request(model))
    checkpoint = load_checkpoint(result.fold_folder / "checkpoint_final.pth")
    assert checkpoint["trainer_name"] == spec.trainer
    assert checkpoint["current_epoch"] == 1
    losses = checkpoint["logging"]["train_losses"]
    assert len(losses) == 1 and math.isfinite(losses[0])

    plans = json.loads((workspace / "preprocessed" / "Dataset601_TinyPETCT" / f"nnUNetPlans_{model}.json").read_text())
    configuration = PlansManager(plans).get_configuration(spec.configuration)
    assert configuration.network_arch_class_name == spec.class_path
    network = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                     configuration.network_arch_init_kwargs_req_import, 2, 2,
                                     deep_supervision=spec.deep_supervision)
    network.load_state_dict(checkpoint["network_weights"], strict=True)


def test_a_cancelled_training_resumes_from_its_last_epoch_and_a_finished_one_is_not_redone(workspace):
    request = tiny_request("umamba-bot", epochs=2, plans_name="resume_test")
    calls = {"n": 0}

    def cancel_in_second_epoch() -> bool:
        calls["n"] += 1
        return calls["n"] > 2  # 2 iterations per epoch: cancel at the first one of epoch 2

    with pytest.raises(CancelledError):
        train(request, should_cancel=cancel_in_second_epoch)
    folder = workspace / "results" / "Dataset601_TinyPETCT" / "nnUNetTrainerUMamba__resume_test__3d_fullres" / "fold_all"
    assert load_checkpoint(folder / "checkpoint_latest.pth")["current_epoch"] == 1
    assert not (folder / "checkpoint_final.pth").exists()

    epochs_seen = []
    result = train(request, on_epoch=lambda done, total, metrics: epochs_seen.append((done, total)))
    assert (result.resumed_from_epoch, epochs_seen) == (1, [(2, 2)])
    assert load_checkpoint(folder / "checkpoint_final.pth")["current_epoch"] == 2
    assert train(request).already_done

    with pytest.raises(InputError, match="plans-name"):
        train(tiny_request("umamba-bot", epochs=2, plans_name="resume_test", features=[4, 8, 32]))


def test_the_cli_trains_and_reports_bad_options_without_a_traceback(workspace, capsys):
    args = ["train", "--dataset", DATASET, "--model", "attumamba", "--fold", "all", "--epochs", "1", "--iterations", "1",
            "--device", "cpu", "--features", "4,8,16", "--patch", "16x32x32", "--batch-size", "2", "--no-validation",
            "--plans-name", "cli_test"]
    assert cli_main(args) == 0
    assert "checkpoints in" in capsys.readouterr().out
    assert cli_main(args) == 0
    assert "already trained" in capsys.readouterr().out

    assert cli_main(["train", "--dataset", "999", "--device", "cpu"]) == 2
    assert "create it with 'attumamba-seg dataset'" in capsys.readouterr().err
    assert cli_main(["train", "--dataset", DATASET, "--model", "mpunet", "--features", "4,8", "--device", "cpu"]) == 2
    assert "fixed topology" in capsys.readouterr().err


def _foreground_at_centre_share(loader_class, workspace) -> tuple[float, float]:
    """Over 40 foreground batches: share of patches with a lesion at the centre voxel, share with any lesion."""
    import numpy as np
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    name = "Dataset601_TinyPETCT"
    plans = json.loads((workspace / "preprocessed" / name / "nnUNetPlans_attumamba.json").read_text())
    dataset_json = json.loads((workspace / "preprocessed" / name / "dataset.json").read_text())
    plans_manager = PlansManager(plans)
    folder = workspace / "preprocessed" / name / plans_manager.get_configuration("3d_fullres").data_identifier
    dataset = infer_dataset_class(str(folder))(str(folder))
    patch = [16, 32, 32]
    loader = loader_class(dataset, 4, patch, patch, plans_manager.get_label_manager(dataset_json),
                          oversample_foreground_percent=1.0)
    np.random.seed(0)
    segs = torch.cat([loader.generate_train_batch()["target"] for _ in range(10)])
    centre = segs[:, 0, patch[0] // 2, patch[1] // 2, patch[2] // 2]
    return float((centre == 1).float().mean()), float((segs == 1).flatten(1).any(1).float().mean())


def test_the_cpu_recipe_places_lesions_off_centre_in_its_foreground_patches(workspace):
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

    from attumamba.training.sampling import LesionAnywhereDataLoader
    from attumamba.training.trainers import nnUNetTrainerAttUMamba, nnUNetTrainerAttUMambaCPU

    train(tiny_request("attumamba"))  # makes the preprocessed data (a no-op when the first test ran)
    centred, with_lesion = _foreground_at_centre_share(nnUNetDataLoader, workspace)
    anywhere, anywhere_with_lesion = _foreground_at_centre_share(LesionAnywhereDataLoader, workspace)
    assert centred > 0.9 and with_lesion == 1.0  # nnU-Net: the chosen lesion voxel is the centre voxel
    assert anywhere < 0.5 and anywhere_with_lesion == 1.0  # ours: off-centre, yet every patch holds lesion
    assert nnUNetTrainerAttUMambaCPU.lesion_anywhere and not nnUNetTrainerAttUMamba.lesion_anywhere


def test_the_cpu_recipe_gives_no_dice_reward_for_predicting_nothing_in_an_empty_patch(workspace):
    from attumamba.training.trainers import nnUNetTrainerAttUMamba, nnUNetTrainerAttUMambaCPU

    run = train(tiny_request("attumamba", trainer="nnUNetTrainerAttUMambaCPU", plans_name="batch_dice_test"))
    plans = json.loads((run.fold_folder.parent / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["batch_dice"] is True  # the run records what it trained with
    plans["configurations"]["3d_fullres"]["batch_dice"] = False  # nnU-Net's 3d_fullres default
    dataset_json = json.loads((run.fold_folder.parent / "dataset.json").read_text())

    target = torch.zeros(2, 1, 8, 8, 8)
    target[1, 0, 2:6, 2:6, 2:6] = 1  # one empty patch, one with a 64-voxel lesion
    nothing = torch.stack([torch.full_like(target[:, 0], 20.0), torch.full_like(target[:, 0], -20.0)], 1)
    exact = torch.cat([20 - 40 * target, 40 * target - 20], 1)

    def dice_term(trainer_class):
        trainer = trainer_class(plans={**plans, "continue_training": False}, configuration="3d_fullres", fold="all",
                                dataset_json=dataset_json, device=torch.device("cpu"))
        dice = trainer._build_loss().loss.dc  # inside the deep-supervision wrapper: nnU-Net's Dice+CE
        return float(dice(nothing, target)), float(dice(exact, target))

    per_sample_nothing, per_sample_exact = dice_term(nnUNetTrainerAttUMamba)
    batch_nothing, batch_exact = dice_term(nnUNetTrainerAttUMambaCPU)
    assert per_sample_nothing == pytest.approx(-0.5, abs=1e-3)  # the empty patch scores a perfect Dice of 1
    assert batch_nothing == pytest.approx(0.0, abs=1e-3)  # ours: missing the lesion earns nothing
    assert per_sample_exact == pytest.approx(-1.0, abs=1e-3) and batch_exact == pytest.approx(-1.0, abs=1e-3)


def test_init_from_copies_a_models_weights_and_refuses_another_network(workspace, tmp_path):
    from attumamba.training.train import initialise_weights

    source = train(tiny_request("attumamba"))
    stripped = tmp_path / "weights.pth"
    weights = load_checkpoint(source.fold_folder / "checkpoint_final.pth")["network_weights"]
    torch.save({"network_weights": weights}, stripped)

    fine_tuned = train(tiny_request("attumamba", trainer="nnUNetTrainerAttUMambaCPU", plans_name="init_test",
                                    init_from=str(stripped), iterations=1))
    tuned = load_checkpoint(fine_tuned.fold_folder / "checkpoint_final.pth")["network_weights"]
    learned = [k for k in weights if weights[k].is_floating_point() and "running_" not in k]  # not BatchNorm statistics
    drift = max(float((tuned[k] - weights[k]).abs().max()) for k in learned)
    assert drift < 0.01  # one Adam step at 1e-3 from the source weights, not a fresh initialisation

    train(tiny_request("attumamba", features=[4, 8, 32], plans_name="init_other"))
    plans = json.loads((workspace / "preprocessed" / "Dataset601_TinyPETCT" / "init_other.json").read_text())
    configuration = PlansManager(plans).get_configuration("3d_fullres")
    network = get_network_from_plans(configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
                                     configuration.network_arch_init_kwargs_req_import, 2, 2, deep_supervision=True)
    with pytest.raises(InputError, match="same --model, --features"):
        initialise_weights(network, str(stripped))
    with pytest.raises(InputError, match="cannot read"):
        initialise_weights(network, str(tmp_path / "missing.pth"))
