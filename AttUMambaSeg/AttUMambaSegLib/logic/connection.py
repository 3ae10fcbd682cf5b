"""Checking a backend and describing its models, for the module's backend and model sections.

:func:`check_backend` makes two HTTP calls; the GUI runs it with :func:`in_background` and
polls the future from its timer, so an unreachable remote host never freezes Slicer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .backend_process import token_for
from .client import BackendClient
from .workers import in_background  # noqa: F401 - the GUI's way to run a call off its thread


@dataclass
class BackendStatus:
    health: dict
    models: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the status light: version, devices, kernels, number of models."""
        health = self.health
        devices = ", ".join(health.get("devices") or []) or "unknown device"
        kernels = "; mamba-ssm kernels" if health.get("mamba_ssm_kernels") else ""
        count = len(self.models)
        models = f"{count} model{'s' if count != 1 else ''}" if count else "no models installed"
        return f"backend {health.get('version', '?')} on {devices}{kernels}; {models}"


def connect(url: str, token: str = "", ca_file: str = "") -> BackendClient:
    """A client for a running backend; without a token, a local backend's default token file is read.
    ``ca_file``: the certificate an https backend with a self-signed certificate presents (or its CA)."""
    return BackendClient(url, token_for(url, token), ca_file=ca_file)


def check_backend(client: BackendClient) -> BackendStatus:
    """Health (no token needed) and then the models (checks the token)."""
    return BackendStatus(client.health(), client.models())


def model_choices(models: list[dict]) -> list[tuple[str, str]]:
    """(name to send, label to show) per model, in the backend's order."""
    return [(str(model["name"]), str(model.get("display_name") or model["name"])) for model in models
            if model.get("name")]


def describe_model(model: dict | None) -> str:
    """A few lines about a model: what it is, what it needs, how good it is."""
    if not model:
        return "No model: connect to a backend to list its models."
    lines = [model.get("description") or model.get("display_name") or model.get("name", "")]
    details = [f"architecture {model['architecture']}" if model.get("architecture") else "",
               f"inputs {', '.join(model.get('inputs') or [])} (CT in HU, PET in SUV)" if model.get("inputs") else "",
               _spacing(model.get("target_spacing_mm")),
               f"folds {', '.join(model['folds'])}" if model.get("folds") else "",
               f"license {model['license']}" if model.get("license") else ""]
    lines.append("; ".join(d for d in details if d))
    metrics = _metrics(model.get("metrics"))
    if metrics:
        lines.append(f"measured: {metrics}")
    return "\n".join(line for line in lines if line)


def _spacing(spacing) -> str:
    if not spacing:
        return ""
    try:
        return "spacing " + " x ".join(f"{float(s):g}" for s in spacing) + " mm"
    except (TypeError, ValueError):
        return ""


def _metrics(metrics) -> str:
    """The top-level numbers of a model's metrics (nested tables stay in the model's folder)."""
    if not isinstance(metrics, dict):
        return ""
    numbers = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(f"{k} {v:.3g}" for k, v in numbers[:6])
