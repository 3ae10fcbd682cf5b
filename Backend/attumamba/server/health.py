"""What ``GET /v1/health`` reports about the machine, worked out once when the service starts:
finding the scan backend imports torch and may build the CPU kernel, far too slow for a probe."""

from __future__ import annotations

from ..errors import InputError


def runtime_facts(devices: tuple[str, ...]) -> dict:
    import torch

    from ..ssm.dispatch import scan_backend

    def backend(device: str) -> str:
        try:
            return scan_backend(device)
        except InputError as error:     # e.g. a bad ATTUMAMBA_SSM_BACKEND: said here, jobs refuse it too
            return f"unavailable: {error}"

    cuda = torch.cuda.is_available()
    return {"devices": list(devices), "cuda": cuda, "scan": {device: backend(device) for device in devices},
            "mamba_ssm_kernels": cuda and backend("cuda") == "mamba_ssm-cuda"}
