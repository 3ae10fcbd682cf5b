"""nnU-Net plans -> our networks: every model built by nnU-Net's own code from rewritten plans."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from attumamba.errors import InputError
from attumamba.nets import NETWORKS, plans_with_network
from attumamba.nets.plans import apply_block_count_rule, channel_token_stages


def configuration(patch: list[int], strides: list[list[int]], features: list[int]) -> dict:
    """One configuration as nnU-Net v2.8's default planner writes it (PlainConvUNet), small widths."""
    dims, n = len(patch), len(strides)
    return {
        "data_identifier": f"nnUNetPlans_{dims}d", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": patch, "median_image_size_in_voxels": [100] * dims, "spacing": [2.0] * dims,
        "normalization_schemes": ["CTNormalization", "ZScoreNormalization"], "use_mask_for_norm": [False, False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": {},
        "batch_dice": False,
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": n, "features_per_stage": features, "conv_op": f"torch.nn.modules.conv.Conv{dims}d",
                "kernel_sizes": [[3] * dims] * n, "strides": strides, "n_conv_per_stage": [2] * n,
                "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
                "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dims}d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
    }


PLANS = {
    "dataset_name": "Dataset001_Test", "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": [2.0] * 3,
    "original_median_shape_after_transp": [100] * 3, "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2], "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
    "foreground_intensity_properties_per_channel": {},
    "configurations": {
        "2d": configuration([32, 32], [[1, 1], [2, 2], [2, 2], [2, 2]], [8, 16, 24, 32]),
        # z divisible by 4 only (one pool fewer along z), as nnU-Net plans anisotropic data
        "3d_fullres": configuration([20, 32, 32], [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], [8, 16, 24, 32]),
        "3d_fullres_bs4": {"inherits_from": "3d_fullres", "batch_size": 4},
    },
}


def build(plans: dict, name: str, deep_supervision: bool):
    manager = PlansManager(plans).get_configuration(name)
    model = get_network_from_plans(manager.network_arch_class_name, manager.network_arch_init_kwargs,
                                   manager.network_arch_init_kwargs_req_import, 2, 2, deep_supervision=deep_supervision)
    return model, manager


@pytest.mark.parametrize("model_name", list(NETWORKS))
def test_nnunet_builds_every_model_from_rewritten_plans_and_its_outputs_match_the_deep_supervision_targets(model_name):
    spec = NETWORKS[model_name]
    original = copy.deepcopy(PLANS)
    plans = json.loads(json.dumps(plans_with_network(PLANS, model_name)))  # nnU-Net stores plans as JSON
    assert PLANS == original
    torch.manual_seed(0)
    model, manager = build(plans, spec.configuration, spec.deep_supervision)
    assert type(model).__name__ == spec.class_path.rsplit(".", 1)[1]
    patch = manager.patch_size
    assert all(p % m == 0 for p, m in zip(patch, spec.patch_multiple(manager.pool_op_kernel_sizes)))
    x = torch.randn(1, 2, *patch)
    model.eval()
    with torch.no_grad():
        if spec.deep_supervision:
            outputs = model(x)
            # the trainer's own rule: one target per cumulative stride but the last
            scales = 1 / np.cumprod(np.vstack(manager.pool_op_kernel_sizes), axis=0)[:-1]
            assert [tuple(o.shape[2:]) for o in outputs] == [tuple(int(p * s) for p, s in zip(patch, row)) for row in scales]
            model.decoder.deep_supervision = False  # what nnU-Net's predictor does
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2, *patch)


DATASET_JSON = {"channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0, "lesion": 1},
                "numTraining": 1, "file_ending": ".nii.gz"}


@pytest.mark.parametrize("model_name, volume_shape", [("attumamba", (2, 20, 32, 32)), ("mambaahnet", (2, 3, 32, 32))])
def test_nnunet_predictor_runs_the_model_and_one_tile_equals_a_plain_forward(model_name, volume_shape):
    """nnU-Net's sliding window (inference mode, CPU, half-precision accumulation): a volume of one patch
    (3D) or of patch-sized slices (2D) gives the network's own output. Uniform tile weights, because
    the Gaussian's corner weights fall below half precision's range (nnU-Net accepts that)."""
    spec = NETWORKS[model_name]
    plans = plans_with_network(PLANS, model_name)
    torch.manual_seed(0)
    model, manager = build(plans, spec.configuration, deep_supervision=False)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=False, use_mirroring=False,
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(model, PlansManager(plans), manager, [model.state_dict()], DATASET_JSON,
                                    "nnUNetTrainer", None)
    volume = torch.randn(*volume_shape)
    logits = predictor.predict_logits_from_preprocessed_data(volume)
    with torch.no_grad():
        direct = model.eval()(volume[None])[0]  # Mamba-AHNet segments a volume slice by slice itself
    assert logits.shape == direct.shape == (2, *volume_shape[1:])
    torch.testing.assert_close(logits.float(), direct, atol=2e-2, rtol=1e-2)  # nnU-Net accumulates in half precision


def test_topology_patch_and_token_modes_written_into_the_plans():
    light = plans_with_network(PLANS, "lightmunet")["configurations"]["3d_fullres"]
    assert light["patch_size"] == [24, 32, 32]  # rounded up to its total stride, 8
    assert light["architecture"]["arch_kwargs"]["strides"] == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert light["architecture"]["_kw_requires_import"] == ["conv_op"]
    mpu = plans_with_network(PLANS, "mpunet")["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert mpu["strides"] == [[1] * 3, [2] * 3, [2] * 3, [2] * 3, [1] * 3]  # four outputs: 1, 1/2, 1/4, 1/8
    att = plans_with_network(PLANS, "attumamba")["configurations"]["3d_fullres"]
    assert att["patch_size"] == [20, 32, 32]  # the plan's own topology divides it already
    assert att["architecture"]["network_class_name"] == "attumamba.nets.AttUMamba"
    assert att["architecture"]["arch_kwargs"]["features_per_stage"] == [8, 16, 24, 32]
    enc = plans_with_network(PLANS, "umamba-enc")["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert enc["input_size"] == [20, 32, 32]
    small = plans_with_network(PLANS, "lightmunet-light")["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert small["init_filters"] == 24 and small["blocks_down"] == [1, 2, 2, 2]


def test_an_inheriting_configuration_is_resolved_and_the_others_are_untouched():
    plans = plans_with_network(PLANS, "attumamba", "3d_fullres_bs4")
    resolved = plans["configurations"]["3d_fullres_bs4"]
    assert "inherits_from" not in resolved and resolved["batch_size"] == 4 and resolved["patch_size"] == [20, 32, 32]
    assert plans["configurations"]["3d_fullres"] == PLANS["configurations"]["3d_fullres"]
    model, _ = build(plans, "3d_fullres_bs4", True)
    assert type(model).__name__ == "AttUMamba"


def test_wrong_requests_get_clear_messages():
    with pytest.raises(InputError, match="2D.*'2d' configuration"):
        plans_with_network(PLANS, "mambaahnet", "3d_fullres")
    with pytest.raises(InputError, match="3D.*'3d_fullres' configuration"):
        plans_with_network(PLANS, "attumamba", "2d")
    with pytest.raises(InputError, match="no configuration '3d_lowres'.*2d, 3d_fullres"):
        plans_with_network(PLANS, "attumamba", "3d_lowres")
    old = copy.deepcopy(PLANS)
    del old["configurations"]["3d_fullres"]["architecture"]
    with pytest.raises(InputError, match="old format"):
        plans_with_network(old, "attumamba")
    with pytest.raises(InputError, match="choose one of: attumamba"):
        plans_with_network(PLANS, "unet-9000")


def test_block_count_rule_of_the_published_code():
    assert apply_block_count_rule([2] * 6, [2] * 5, 6) == ([2, 2, 2, 1, 1, 1], [2, 2, 2, 1, 1])
    assert apply_block_count_rule([2] * 7, [2] * 6, 7) == ([2, 2, 2, 2, 1, 1, 1], [2, 2, 2, 2, 1, 1])


def test_channel_token_mode_where_a_stage_has_no_more_voxels_than_channels():
    strides, features = [1, 2, 2, 2, 2, 2], [32, 64, 128, 256, 320, 320]
    assert channel_token_stages([128] * 3, strides, features) == [False] * 5 + [True]       # 4³ = 64 ≤ 320
    assert channel_token_stages([64, 160, 192], strides, features) == [False] * 5 + [True]  # 2·5·6 = 60
    assert channel_token_stages([32] * 3, strides, features) == [False] * 3 + [True] * 3    # 4³ = 64 ≤ 256
