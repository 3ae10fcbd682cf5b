"""Which torch device a job runs on: ``auto`` takes CUDA when PyTorch sees a GPU."""

from __future__ import annotations

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' asked for, but PyTorch sees no CUDA GPU; use 'cpu' or 'auto'")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)
