"""Inference: model packages, nnU-Net preprocessing + sliding window, and one study end to end."""

from .package import ModelPackage, export_package, installed_models, load_weights, open_model, resolve_model
from .pipeline import SegmentOptions, StudyResult, load_study, run_study, write_outputs
from .segmenter import Segmentation, Segmenter
from .sliding_window import predict_logits

__all__ = [
    "ModelPackage",
    "SegmentOptions",
    "Segmentation",
    "Segmenter",
    "StudyResult",
    "export_package",
    "installed_models",
    "load_study",
    "load_weights",
    "open_model",
    "predict_logits",
    "resolve_model",
    "run_study",
    "write_outputs",
]
