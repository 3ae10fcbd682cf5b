"""Inference: model packages, nnU-Net preprocessing + sliding window, and one study end to end."""

from .package import (InstalledModel, ModelPackage, export_package, installed_models, list_models, load_weights,
                      locate_model, open_model, resolve_model)
from .pipeline import SegmentOptions, StudyResult, load_study, run_study, write_outputs
from .segmenter import Segmentation, Segmenter
from .sliding_window import predict_logits

__all__ = [
    "InstalledModel",
    "ModelPackage",
    "SegmentOptions",
    "Segmentation",
    "Segmenter",
    "StudyResult",
    "export_package",
    "installed_models",
    "list_models",
    "load_study",
    "load_weights",
    "locate_model",
    "open_model",
    "predict_logits",
    "resolve_model",
    "run_study",
    "write_outputs",
]
