"""CT + PET → lesion mask with a model package: nnU-Net's preprocessing, our sliding window, and
probabilities resampled to the reference grid before they are thresholded.

The network sees what it was trained on (``attumamba-seg dataset``): CT in HU resampled onto
the PET grid, then nnU-Net's crop, normalisation and resampling to the plans' spacing. Its
lesion probability goes back through nnU-Net's probability resampling to the PET grid and
then, linearly, onto the reference grid (CT by default): thresholding there gives smooth
lesion borders at CT resolution, where nearest-neighbour upsampling of labels would give
PET-sized stair steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import SimpleITK as sitk
import torch

from ..devices import resolve_device
from ..errors import InputError
from ..io import check_same_space, resample_to
from ..io.voxel_checks import all_finite
from .model_grid import check_model_grid
from .package import ModelPackage, load_weights
from .sliding_window import predict_logits

Progress = Callable[[float, str], None]

# share of the progress bar each stage takes (the network dominates)
_STAGES = {"preprocessing": (0.0, 0.1), "network": (0.1, 0.9), "resampling": (0.9, 1.0)}


@dataclass
class Segmentation:
    mask: sitk.Image            # uint8, 1 = lesion, on the reference grid
    probability: sitk.Image     # float32 lesion probability on the PET grid
    timings: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """A loaded model, ready to segment studies (networks built once, weights checked once)."""

    def __init__(self, package: ModelPackage, device: str = "auto", *, tta: bool = False, step: float = 0.5,
                 skip_empty_tiles: bool = True):
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        if not 0.0 < step <= 1.0:
            raise InputError(f"the tile step must be in (0, 1], not {step}")
        self.package, self.device, self.tta, self.step = package, resolve_device(device), tta, step
        self.skip_empty_tiles = skip_empty_tiles
        self.plans_manager = PlansManager(package.plans)
        self.configuration = self.plans_manager.get_configuration(package.configuration)
        self.label_manager = self.plans_manager.get_label_manager(package.dataset_json)
        n_inputs = len(package.dataset_json["channel_names"])
        self.networks, self.mirror_axes = [], ()
        for checkpoint in package.checkpoints:
            saved = load_weights(checkpoint)
            network = get_network_from_plans(
                self.configuration.network_arch_class_name, self.configuration.network_arch_init_kwargs,
                self.configuration.network_arch_init_kwargs_req_import, n_inputs,
                self.label_manager.num_segmentation_heads, allow_init=True, deep_supervision=False)
            try:
                network.load_state_dict(saved["network_weights"], strict=True)
            except RuntimeError as error:
                raise InputError(f"{checkpoint} does not fit the network its plans describe: "
                                 f"{str(error).splitlines()[0]}") from error
            self.networks.append(network.to(self.device).eval())
            self.mirror_axes = saved["mirror_axes"]

    def segment(self, ct: sitk.Image, pet: sitk.Image, *, reference: Literal["ct", "pet"] = "ct",
                progress: Progress | None = None, should_cancel: Callable[[], bool] | None = None) -> Segmentation:
        """The lesion mask of one study on the ``reference`` grid."""
        if reference not in ("ct", "pet"):
            raise InputError(f"the reference grid is 'ct' or 'pet', not {reference!r}")
        check_same_space(ct, pet)
        _check_finite(ct, "CT")
        _check_finite(pet, "PET")
        check_model_grid(self.package, pet)
        report = _stage_reporter(progress)
        timings: dict[str, float] = {}

        started = time.perf_counter()
        report("preprocessing", 0.0)
        data, properties = self._preprocess(ct, pet)
        timings["preprocessing"] = time.perf_counter() - started

        started = time.perf_counter()
        logits = predict_logits(
            self.networks, data, self.configuration.patch_size, num_classes=self.label_manager.num_segmentation_heads,
            mirror_axes=self.mirror_axes if self.tta else (), step=self.step, device=self.device,
            on_tile=lambda done, total: report("network", done / total), should_cancel=should_cancel,
            skip_empty=self.skip_empty_tiles)
        timings["network"] = time.perf_counter() - started

        started = time.perf_counter()
        report("resampling", 0.0)
        probability = self._lesion_probability_on_pet(logits, properties, pet)
        target = ct if reference == "ct" else pet
        on_reference = probability if reference == "pet" else resample_to(probability, target, kind="image", default=0.0)
        mask = sitk.Cast(sitk.BinaryThreshold(on_reference, 0.5, 1e9, 1, 0), sitk.sitkUInt8)
        mask.CopyInformation(target)
        timings["resampling"] = time.perf_counter() - started
        report("resampling", 1.0)
        return Segmentation(mask, probability, timings)

    def _preprocess(self, ct: sitk.Image, pet: sitk.Image) -> tuple[np.ndarray, dict]:
        from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

        ct_on_pet = resample_to(ct, pet, kind="image", default=-1024.0)
        data = np.stack([sitk.GetArrayViewFromImage(ct_on_pet), sitk.GetArrayViewFromImage(pet)]).astype(np.float32)
        properties = {"spacing": list(pet.GetSpacing())[::-1]}
        data, _, properties = DefaultPreprocessor(verbose=False).run_case_npy(
            data, None, properties, self.plans_manager, self.configuration, self.package.dataset_json)
        return data, properties

    def _lesion_probability_on_pet(self, logits: torch.Tensor, properties: dict, pet: sitk.Image) -> sitk.Image:
        from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

        transpose = self.plans_manager.transpose_forward
        spacing = [properties["spacing"][i] for i in transpose]
        current = self.configuration.spacing if len(self.configuration.spacing) == 3 else \
            [spacing[0], *self.configuration.spacing]
        logits = self.configuration.resampling_fn_probabilities(
            logits, properties["shape_after_cropping_and_before_resampling"], current, spacing)
        probabilities = torch.softmax(torch.as_tensor(logits).float(), 0)
        lesion = (1.0 - probabilities[0]).numpy()  # every foreground class is lesion
        full = np.zeros(properties["shape_before_cropping"], dtype=np.float32)
        full = insert_crop_into_image(full, lesion, properties["bbox_used_for_cropping"])
        image = sitk.GetImageFromArray(np.ascontiguousarray(full.transpose(self.plans_manager.transpose_backward)))
        image.CopyInformation(pet)
        return image


def _check_finite(image: sitk.Image, name: str) -> None:
    if not all_finite(image):
        raise InputError(f"the {name} holds NaN or infinite voxels; fix or re-export the volume")


def _stage_reporter(progress: Progress | None) -> Callable[[str, float], None]:
    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            low, high = _STAGES[stage]
            progress(low + (high - low) * min(1.0, max(0.0, fraction)), stage)
    return report
